"""JSON Schemas of the public file formats, generated from the msgspec Structs.

The Structs are the single source of truth; `docs/schemas/` holds the generated
files for people and other tools, and a test fails when they are out of date.
Regenerate with:  python -m mdivicomtools.schemas docs/schemas
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _without(schema: dict[str, Any], struct: str, fields: tuple[str, ...]) -> None:
    """Drop internal fields (not part of the file format) from one struct's schema."""
    definition = schema["$defs"][struct]
    for name in fields:
        definition["properties"].pop(name, None)
        if name in definition.get("required", []):
            definition["required"].remove(name)


def _normalise(node: Any) -> Any:
    """Descriptions come from docstrings, whose whitespace differs between Python
    versions (3.13 dedents at compile time); one space between words everywhere
    keeps the generated files identical on every supported Python."""
    if isinstance(node, dict):
        return {
            key: " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else _normalise(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    return node


def _document(struct: type, title: str, description: str) -> dict[str, Any]:
    schema = _normalise(msgspec.json.schema(struct))
    return {"$schema": SCHEMA_DRAFT, "title": title, "description": description, **schema}


def resultbundle_schema() -> dict[str, Any]:
    from mdivicomtools.resultbundle import ResultBundle

    return _document(
        ResultBundle,
        "mdivicomtools result bundle sidecar (resultbundle.json)",
        "openSIDS v0.1 result bundle sidecar; unknown fields are allowed.",
    )


def plugin_schema() -> dict[str, Any]:
    from mdivicomtools.contract import PluginSpec

    schema = _document(
        PluginSpec,
        "mdivicomtools plugin (get_plugin() return value or manifest file)",
        "Plugin contract mdivicomtools.plugin.v0.1; unknown meta fields are allowed, "
        "unknown container fields are not.",
    )
    _without(schema, "PluginSpec", ("notes",))
    _without(schema, "PluginMeta", ("extra",))
    return schema


def run_record_schema() -> dict[str, Any]:
    from mdivicomtools.run_types import RunRecord

    return _document(
        RunRecord,
        "mdivicomtools run record (<out>/_runs/<run_id>.json)",
        "Run record, schema mdivicomtools.run.v1.",
    )


SCHEMAS = {
    "resultbundle.schema.json": resultbundle_schema,
    "plugin.schema.json": plugin_schema,
    "run-record.schema.json": run_record_schema,
}


def render(name: str) -> bytes:
    return msgspec.json.format(msgspec.json.encode(SCHEMAS[name]()), indent=2) + b"\n"


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
