"""The folders a run root holds besides the plugins' outputs.

    <out>/<id>/                 a plugin's promoted output
    <out>/_runs/<run_id>.json   its run record (and .log)
    <out>/_staging/<run_id>/    a run in progress; gone when it ends
    <out>/_staging/<run_id>/_work/   its work folder unless --work gives one
    <out>/_batches/<id>.json    a batch summary (batch roots only)

Names starting with `_` cannot clash with a plugin id (ids start with a
letter or digit).
"""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = "_runs"
STAGING_DIR = "_staging"
BATCHES_DIR = "_batches"
WORK_DIR = "_work"  # the default work folder, inside a run's staging folder
#: in a run's staging folder while its promotion is not committed; holds the plugin id
PROMOTING = ".promoting"


def runs_dir(run_out_dir: Path) -> Path:
    return run_out_dir / RUNS_DIR


def staging_root(run_out_dir: Path, run_id: str) -> Path:
    return run_out_dir / STAGING_DIR / run_id


def batch_summary_path(out: Path, batch_id: str) -> Path:
    return out / BATCHES_DIR / f"{batch_id}.json"


def managed_folders(run_out_dir: Path, plugin_id: str) -> list[Path]:
    """What a run of `plugin_id` replaces or writes inside its run root."""
    return [run_out_dir / plugin_id, run_out_dir / STAGING_DIR, run_out_dir / RUNS_DIR]
