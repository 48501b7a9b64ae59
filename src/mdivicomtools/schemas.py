"""JSON Schemas of the public file formats, generated from the msgspec Structs.

The Structs are the single source of truth; `docs/schemas/` holds the generated
files for people and other tools, and a test fails when they are out of date.
Regenerate with:  python -m mdivicomtools.schemas docs/schemas
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mdivicomtools.batch.summary import BATCH_SCHEMA, BatchSummary
from mdivicomtools.bundles.resultbundle import resultbundle_schema
from mdivicomtools.common.jsonio import pretty
from mdivicomtools.common.schema import struct_schema, without
from mdivicomtools.model.contract import PluginSpec
from mdivicomtools.model.run import RunRecord


def plugin_schema() -> dict[str, Any]:
    schema = struct_schema(
        PluginSpec,
        "mdivicomtools plugin (get_plugin() return value or manifest file)",
        "Plugin contract mdivicomtools.plugin.v0.1; unknown meta fields are allowed, "
        "unknown container fields are not.",
    )
    without(schema, "PluginSpec", ("notes",))
    without(schema, "PluginMeta", ("extra",))
    return schema


def run_record_schema() -> dict[str, Any]:
    return struct_schema(
        RunRecord,
        "mdivicomtools run record (<out>/_runs/<run_id>.json)",
        "Run record, schema mdivicomtools.run.v1.",
    )


def batch_summary_schema() -> dict[str, Any]:
    # what `run --sessions --json` and `batches show --json` print too: scripts
    # parse it, and until now it was the one public format without a schema
    return struct_schema(
        BatchSummary,
        "mdivicomtools batch summary (<out>/_batches/<batch_id>.json)",
        f"Batch summary, schema {BATCH_SCHEMA}.",
    )


SCHEMAS = {
    "resultbundle.schema.json": resultbundle_schema,
    "plugin.schema.json": plugin_schema,
    "run-record.schema.json": run_record_schema,
    "batch-summary.schema.json": batch_summary_schema,
}


def render(name: str) -> bytes:
    return pretty(SCHEMAS[name]())


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMAS:
        path = folder / name
        path.write_bytes(render(name))
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")
    for written_path in write_all(target):
        sys.stdout.write(f"wrote {written_path}\n")
