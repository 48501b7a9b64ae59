"""Records, manifests, summaries, promotion markers and sidecars survive a power cut
(common/durable.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdivicomtools import run_batch, run_plugin
from mdivicomtools.resultbundle import write_resultbundle

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "result.csv").write_text("a,b\\n1,2\\n")
    return {}
"""


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The path of every file and folder fsynced, as it was named at that moment."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def _partials_of(seen: list[str], target: Path) -> list[str]:
    return [
        path
        for path in seen
        if Path(path).parent == target.parent
        and Path(path).name.startswith(f".{target.name}.")
        and path.endswith(".tmp")
    ]


def test_a_run_fsyncs_its_records_manifest_marker_and_their_folders(
    site, dataset, tmp_path, synced
):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    run_plugin("writer", dataset=dataset, out=out)  # a previous output, to be replaced
    synced.clear()
    record = run_plugin("writer", dataset=dataset, out=out, overwrite=True)
    assert record.status == "succeeded"
    runs = out / "_runs"
    # the `running` record and the final one: each fsynced before its rename
    assert len(_partials_of(synced, runs / f"{record.run_id}.json")) == 2
    assert len(_partials_of(synced, runs / "datasets" / f"{record.run_id}.json")) == 1
    staging = out / "_staging" / record.run_id
    assert len(_partials_of(synced, staging / ".promoting")) == 1
    # the renames: the records' folder, the manifests' and the two the promotion renamed in
    for folder in (runs, runs / "datasets", out, staging):
        assert str(folder) in synced, (folder, synced)
    # and nothing of the writes is left beside the records
    assert [p.name for p in runs.iterdir() if p.name.endswith(".tmp")] == []


def test_a_batch_summary_is_fsynced_with_its_folder(site, tmp_path, synced):
    site.plugin("writer", run_source=WRITE)
    data = tmp_path / "data"
    (data / "sessions" / "ses-01").mkdir(parents=True)
    out = tmp_path / "batch"
    summary = run_batch("writer", dataset=data, out=out, sessions="*", jobs=1)
    assert summary.status == "succeeded"
    assert len(_partials_of(synced, summary.path)) == 1
    assert str(summary.path.parent) in synced


def test_a_result_bundle_sidecar_is_written_whole_and_fsynced(tmp_path, synced):
    (tmp_path / "events.tsv").write_text("onset\tduration\n0\t1\n")
    path = write_resultbundle(tmp_path, resultbundle_type="lab.events.v1")
    assert len(_partials_of(synced, path)) == 1
    assert str(tmp_path) in synced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.tsv", "resultbundle.json"]
