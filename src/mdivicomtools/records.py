"""Reading and writing run records (`<out>/_runs/<run_id>.json`)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from mdivicomtools.errors import UsageError
from mdivicomtools.run_types import RunRecord

RUNS_DIR = "_runs"


class RecordNotFound(UsageError):
    """`runs show` was asked for a run that has no record."""


def new_run_id(now: datetime | None = None) -> str:
    """`<UTC YYYYmmddTHHMMSSZ>_<8 hex>`: sorts by start time, unique without coordination."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}_{os.urandom(4).hex()}"


def write_json_atomic(path: Path, value: msgspec.Struct) -> None:
    """Write atomically: a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n")
    os.replace(tmp, path)


def write_record(path: Path, record: RunRecord) -> None:
    write_json_atomic(path, record)


def read_record(path: Path) -> RunRecord:
    return msgspec.json.decode(path.read_bytes(), type=RunRecord)


def record_paths(run_out_dir: Path) -> list[Path]:
    runs = run_out_dir / RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.glob("*.json") if not p.name.startswith("."))


def load_records(run_out_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """Every readable record, oldest first, and a warning per unreadable file."""
    records: list[RunRecord] = []
    problems: list[str] = []
    for path in record_paths(run_out_dir):
        try:
            records.append(read_record(path))
        except (OSError, msgspec.DecodeError) as exc:
            problems.append(f"{path}: not a readable run record ({exc})")
    records.sort(key=lambda r: (r.started_at, r.run_id))
    return records, problems


class _OwnerView(msgspec.Struct):
    """Just the fields needed to tell who produced an output folder."""

    class _Plugin(msgspec.Struct):
        id: str
        publisher: str

    run_id: str
    status: str
    started_at: str
    plugin: _Plugin


def output_owner(run_out_dir: Path, plugin_id: str) -> tuple[str, str] | None:
    """(publisher, run_id) of the latest successful run that produced `<out>/<id>/`."""
    best: _OwnerView | None = None
    for path in record_paths(run_out_dir):
        try:
            view = msgspec.json.decode(path.read_bytes(), type=_OwnerView)
        except (OSError, msgspec.DecodeError):
            continue
        if view.plugin.id != plugin_id or view.status != "succeeded":
            continue
        if best is None or (view.started_at, view.run_id) > (best.started_at, best.run_id):
            best = view
    return (best.plugin.publisher, best.run_id) if best else None


def find_record(run_out_dir: Path, run_id: str) -> RunRecord:
    """A run by id, or the newest with `latest`; unknown ids list what exists."""
    records, _ = load_records(run_out_dir)
    if not records:
        raise RecordNotFound(f"no run records in {str(run_out_dir / RUNS_DIR)!r}")
    if run_id == "latest":
        return records[-1]
    for record in records:
        if record.run_id == run_id:
            return record
    recent = ", ".join(r.run_id for r in records[-3:])
    raise RecordNotFound(
        f"no run {run_id!r} in {str(run_out_dir)!r}; the newest are: {recent} (or use 'latest')"
    )


def session_folders(out: Path) -> list[Path]:
    """Sub-folders of a batch's --out that are run roots of their own (have _runs/)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.is_dir() and (p / RUNS_DIR).is_dir())


def latest_by_session(out: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Per session and plugin: the latest run's status, its id and how many runs there were."""
    rows: list[dict[str, object]] = []
    problems: list[str] = []
    for folder in session_folders(out):
        records, found_problems = load_records(folder)
        problems.extend(found_problems)
        by_plugin: dict[str, list[RunRecord]] = {}
        for record in records:
            by_plugin.setdefault(record.plugin.ref, []).append(record)
        for plugin, runs in sorted(by_plugin.items()):
            latest = runs[-1]
            rows.append(
                {
                    "session": folder.name,
                    "plugin": plugin,
                    "status": latest.status,
                    "run_id": latest.run_id,
                    "started_at": latest.started_at,
                    "runs": len(runs),
                    "error": f"{latest.error.type}: {latest.error.message}"
                    if latest.error
                    else None,
                }
            )
    return rows, problems
