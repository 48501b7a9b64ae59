"""Run stamps: the fields of a result bundle that say when and in which run it was written.

A result bundle sidecar records when it was written (`created_at`) and, when
written inside `mdivicom run`, by which run (`producer.pipeline_run_id`):
`write_resultbundle` fills both. They change with every run by design, so two
runs that produced the very same data still write sidecars that differ in
bytes. `rerun` would then call every plugin that writes a typed bundle
non-deterministic. Comparing the sidecars with these two fields set aside
tells a real difference from a new timestamp, while every other byte of the
outputs is still compared by sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.bundles.resultbundle import SIDECAR_NAME
from mdivicomtools.common.safefs import read_regular

#: the sidecar fields that belong to the run, not to the data: (object path, key)
RUN_STAMPS: tuple[tuple[tuple[str, ...], str], ...] = (
    ((), "created_at"),
    (("producer",), "pipeline_run_id"),
)


def is_sidecar(path: str) -> bool:
    """Whether an output path (relative, '/'-separated) names a result bundle sidecar."""
    return path.rsplit("/", 1)[-1] == SIDECAR_NAME


def _without_stamps(data: bytes) -> Any:
    """The sidecar's JSON with its run stamps removed, or None when it is not a JSON object."""
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    for parents, key in RUN_STAMPS:
        holder: Any = document
        for name in parents:
            holder = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(key, None)
    return document


def same_apart_from_run_stamps(original: Path, original_sha256: str, new: Path) -> bool:
    """Whether two sidecars differ only in their run stamps.

    `original_sha256` is what the original run recorded: a sidecar rewritten
    since (or replaced by a later run) no longer proves anything about that
    run, so it never counts as the same. Each file is read once, within the
    size cap the runner puts on everything it parses.
    """
    try:
        before, after = read_regular(original), read_regular(new)
    except OSError:  # gone, not a regular file, or over the cap: compared by bytes only
        return False
    if hashlib.sha256(before).hexdigest() != original_sha256:
        return False
    stripped = _without_stamps(before)
    return stripped is not None and stripped == _without_stamps(after)
