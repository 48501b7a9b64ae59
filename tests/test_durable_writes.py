"""Records, manifests, summaries, promotion markers and sidecars survive a power cut,
and what a write cut short leaves is removed by `runs clean` (common/durable.py)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from mdivicomtools import run_batch, run_plugin
from mdivicomtools.common import durable
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
    (dataset / "new.txt").write_text("a dataset changed since: a manifest of its own")
    synced.clear()
    record = run_plugin("writer", dataset=dataset, out=out, overwrite=True)
    assert record.status == "succeeded"
    runs = out / "_runs"
    # the `running` record and the final one: each fsynced before its rename
    assert len(_partials_of(synced, runs / f"{record.run_id}.json")) == 2
    assert len(_partials_of(synced, out / record.dataset.manifest)) == 1
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
    # `running` as it starts and the final one are fsynced; the rewrite as its one
    # session ended is not (it cost a batch of short sessions 18% of its time)
    assert len(_partials_of(synced, summary.path)) == 2
    assert str(summary.path.parent) in synced


def test_a_result_bundle_sidecar_is_written_whole_and_fsynced(tmp_path, synced):
    (tmp_path / "events.tsv").write_text("onset\tduration\n0\t1\n")
    path = write_resultbundle(tmp_path, resultbundle_type="lab.events.v1")
    assert len(_partials_of(synced, path)) == 1
    assert str(tmp_path) in synced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.tsv", "resultbundle.json"]


def test_a_write_whose_file_a_cleaner_removed_before_it_was_locked_writes_another(
    tmp_path, monkeypatch
):
    """`runs clean` judges a temporary file by its lock: one made but not yet locked
    looks abandoned. The writer then finds its file gone and writes through a new one,
    rather than renaming a file that has no name (the record would be lost)."""
    real = fcntl.flock
    made: list[str] = []

    def flock(fd: int, operation: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if operation == fcntl.LOCK_EX and not made:
            made.append(name)
            assert durable.remove_if_abandoned(Path(name))  # a cleaner, just in between
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    target = tmp_path / "_runs" / "r.json"
    durable.write_atomic(target, b"{}\n")
    assert target.read_bytes() == b"{}\n"
    assert made and not Path(made[0]).exists()
    assert list(target.parent.iterdir()) == [target]


def test_runs_clean_removes_cut_writes_and_leaves_one_being_written(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out)
    runs = out / "_runs"
    # cut short: the name of this release's writes, of an older release's, a manifest's
    # and a batch summary's
    cut = [
        runs / f".{record.run_id}.json.1a2b3c4d.tmp",
        runs / f".{record.run_id}.json.tmp",
        runs / "datasets" / f".{record.run_id}.json.5e6f7a8b.tmp",
        out / "_batches" / ".20261128T000000Z_00000000.json.tmp",
    ]
    for path in cut:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'{"schema": "mdivic')
    live = runs / ".20991231T000000Z_ffffffff.json.0badf00d.tmp"
    fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer still at work
        listed = site.cli("runs", "list", str(out), "--json")
        assert listed.returncode == 0 and listed.stderr == "", listed.stderr
        assert [item["run_id"] for item in json.loads(listed.stdout)] == [record.run_id]
        cleaned = site.cli("runs", "clean", str(out))
        assert cleaned.returncode == 0, cleaned.stderr
        for path in cut:
            assert not path.exists(), path
            assert f"removed {path} (a write cut short, by a dead process)" in cleaned.stdout
        assert live.exists() and str(live) not in cleaned.stdout
        assert f"{len(cut)} item(s) cleaned" in cleaned.stderr
    finally:
        os.close(fd)
    again = site.cli("runs", "clean", str(out))
    assert again.returncode == 0 and not live.exists(), again.stderr
    assert (runs / f"{record.run_id}.json").is_file()
