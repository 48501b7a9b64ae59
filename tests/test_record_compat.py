"""Records, summaries and manifests of other releases: read, refused by their schema, kept.

`tests/old_records/` holds records and a batch summary written by earlier
commits of this repository (named by commit: 7c3f1a3 had no container,
dataset or batch support yet; cf12f00 no dataset fingerprints; 2449d82 no
timeout_s/isolate), with their folders replaced by `{out}` and `{dataset}`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import msgspec
import pytest

from mdivicomtools import rerun, run_batch, run_plugin
from mdivicomtools.common.jsonio import ForeignLayout
from mdivicomtools.errors import UsageError
from mdivicomtools.model.run import ErrorInfo
from mdivicomtools.records.digest import read_manifest
from mdivicomtools.records.store import read_record
from mdivicomtools.runner.debris import finish_dead_run
from mdivicomtools.runner.rerun import unrecorded

OLD = Path(__file__).parent / "old_records"

COPY = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for src in sorted(pathlib.Path(dataset_dir).rglob("*.txt")):
        dst = pathlib.Path(out_dir, src.relative_to(dataset_dir))
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text().upper())
    return {"ok": True}
"""


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture
def two_runs(site, dataset, tmp_path):
    """Two runs of one plugin into one --out: (out, older record path, newer record path)."""
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    older = run_plugin("copy", dataset=dataset, out=out)
    newer = run_plugin("copy", dataset=dataset, out=out, overwrite=True)
    runs = out / "_runs"
    return out, runs / f"{older.run_id}.json", runs / f"{newer.run_id}.json"


@pytest.mark.parametrize("schema", ["mdivicomtools.run.v2", "labtool.run.v1"])
def test_a_record_of_another_layout_is_named_never_read_as_v1(site, two_runs, schema):
    out, older, newer = two_runs
    edit(newer, lambda data: data.update(schema=schema))
    with pytest.raises(ForeignLayout, match=re.escape(f"its schema is '{schema}'")):
        read_record(newer)

    listed = site.cli("runs", "list", str(out))
    assert listed.returncode == 0
    assert older.stem in listed.stdout and newer.stem not in listed.stdout
    assert f"{newer}: not a readable run record (its schema is '{schema}'" in listed.stderr

    for command, run_id in [
        (("runs", "show"), "latest"),
        (("runs", "show"), newer.stem[:20]),
        (("verify",), "latest"),
        (("rerun",), "latest"),
    ]:
        result = site.cli(*command, str(out), run_id)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        [line] = errors(result)
        assert line.startswith(f"Error: the run record '{newer}' cannot be read: its schema is"), (
            line
        )
        assert "not 'mdivicomtools.run.v1'" in line

    # the older run, named by its id, is still there to read
    assert site.cli("runs", "show", str(out), older.stem).returncode == 0


def test_the_schema_is_named_also_when_the_rest_does_not_decode(two_runs):
    _, _, newer = two_runs
    edit(newer, lambda data: data.update(schema="mdivicomtools.run.v2", status="cancelled"))
    with pytest.raises(ForeignLayout, match=re.escape("'mdivicomtools.run.v2'")):
        read_record(newer)


def test_a_record_that_cannot_be_read_is_named_not_called_missing(site, two_runs):
    out, older, newer = two_runs
    edit(newer, lambda data: data.pop("host"))
    result = site.cli("runs", "show", str(out), newer.stem)
    assert result.returncode == 2
    assert errors(result) == [
        f"Error: the run record '{newer}' cannot be read: host is missing (required)"
    ]
    older.unlink()
    for command in (("runs", "show"), ("verify",), ("runs", "export")):
        args = ("--ro-crate", str(out.parent / "crate")) if command == ("runs", "export") else ()
        result = site.cli(*command, str(out), "latest", *args)
        assert result.returncode == 2
        [line] = errors(result)
        assert f"'{newer}' cannot be read: host is missing (required)" in line


def _two_sessions(data):
    """A study of two sessions, ses-01 and ses-02, of one small file each."""
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
        (data / "sessions" / name / "x.txt").write_text(name)
    return data


def test_a_batch_session_whose_newest_record_cannot_be_read_is_skipped_by_name(site, tmp_path):
    site.plugin("copy", run_source=COPY)
    data = _two_sessions(tmp_path / "data")
    out = tmp_path / "batch"
    assert run_batch("copy", dataset=data, out=out, sessions="*", jobs=1).status == "succeeded"
    [record] = (out / "ses-02" / "_runs").glob("*.json")
    edit(record, lambda data: data.update(schema="mdivicomtools.run.v2"))
    result = site.cli("verify", str(out))
    assert result.returncode == 0
    assert "ses-01: lab/copy run" in result.stdout
    assert f"ses-02: skipped: the run record '{record}' cannot be read: its schema" in (
        result.stdout + result.stderr
    )


def test_batch_summaries_and_dataset_manifests_of_another_layout_are_not_read(site, tmp_path):
    site.plugin("copy", run_source=COPY)
    data = tmp_path / "data"
    (data / "sessions" / "ses-01").mkdir(parents=True)
    (data / "sessions" / "ses-01" / "x.txt").write_text("x")
    out = tmp_path / "batch"
    summary = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1)
    edit(summary.path, lambda doc: doc.update(schema="mdivicomtools.batch.v2"))
    result = site.cli("batches", "list", str(out))
    assert result.returncode == 0 and summary.batch_id not in result.stdout
    assert "its schema is 'mdivicomtools.batch.v2', not 'mdivicomtools.batch.v1'" in result.stderr

    session = out / "ses-01"
    [record] = (session / "_runs").glob("*.json")
    rel = read_record(record).dataset.manifest
    assert read_manifest(session, rel) is not None
    edit(session / rel, lambda doc: doc.update(schema="mdivicomtools.dataset-manifest.v2"))
    assert read_manifest(session, rel) is None


NEWER = {"signature": "abc"}


def add_newer_fields(data: dict) -> None:
    """Fields a newer release of the same layout might add, at the top and inside."""
    data["provenance"] = NEWER
    data["plugin"]["signature"] = "abc"
    data["host"]["cpu"] = "x86_64"


def test_fields_of_a_newer_release_are_shown_and_survive_runs_clean(site, two_runs):
    out, _, newer = two_runs

    def running_of_a_dead_runner(data: dict) -> None:
        add_newer_fields(data)
        data.update(status="running", outputs=[], error=None)
        data["runner"]["pid"] = 2**22 + 1  # above pid_max: no such process

    edit(newer, running_of_a_dead_runner)
    shown = json.loads(site.cli("runs", "show", str(out), newer.stem, "--json").stdout)
    assert shown["provenance"] == NEWER and shown["plugin"]["signature"] == "abc"

    cleaned = site.cli("runs", "clean", str(out))
    assert cleaned.returncode == 0 and f"marked run {newer.stem} abandoned" in cleaned.stdout
    data = json.loads(newer.read_text())
    assert data["status"] == "abandoned" and data["error"]["type"] == "Abandoned"
    assert data["provenance"] == NEWER and data["plugin"]["signature"] == "abc"
    assert data["host"]["cpu"] == "x86_64"


def test_a_dead_runners_record_finished_by_the_supervisor_keeps_newer_fields(two_runs):
    out, _, newer = two_runs
    edit(newer, lambda data: [add_newer_fields(data), data.update(status="running")])
    staging = out / "_staging" / newer.stem
    staging.mkdir(parents=True)
    error = ErrorInfo(type="RunnerCrashed", message="the runner died from SIGKILL")
    assert finish_dead_run(newer, staging, "failed", error) is not None
    data = json.loads(newer.read_text())
    assert data["status"] == "failed" and data["error"]["type"] == "RunnerCrashed"
    assert data["provenance"] == NEWER and data["plugin"]["signature"] == "abc"
    assert not staging.exists()


@pytest.mark.parametrize("then", ["runs clean", "the next run"])
def test_an_older_releases_runner_killed_mid_promotion_loses_no_output(
    site, dataset, two_runs, then
):
    """Releases before the `.promoting` marker moved the output in place aside as
    `.previous-<id>` into the run's staging folder and then the new one in, with no
    marker. Their runner killed between the two moves left the only copy of the
    recorded output there (and no record), and `runs clean` or the next run removed
    it with the folder: `verify` then said the recorded run's outputs were missing."""
    out, _, newer = two_runs
    recorded = (out / "copy" / "a.txt").read_text()
    dead = "20260101T000000Z_0000dead"
    staging = out / "_staging" / dead
    (staging / "copy").mkdir(parents=True)  # the dead run's own, complete output
    (staging / "copy" / "a.txt").write_text("the dead run's\n")
    os.replace(out / "copy", staging / ".previous-copy")  # and then the runner is killed

    verified = site.cli("verify", str(out))
    assert verified.returncode == 1
    assert f"run {dead} was replacing these outputs" in verified.stdout
    if then == "runs clean":
        cleaned = site.cli("runs", "clean", str(out))
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"put back the previous output {out / 'copy'}" in cleaned.stdout
    else:
        with pytest.raises(UsageError, match="already exists"):
            run_plugin("copy", dataset=dataset, out=out)
    assert (out / "copy" / "a.txt").read_text() == recorded
    assert not (out / "_staging").exists()
    verified = site.cli("verify", str(out), newer.stem)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_runs_clean_removes_an_older_releases_result_file_of_a_killed_isolated_run(site, two_runs):
    """An isolated run of an earlier release handed its plugin's return value to its
    runner in `_runs/.<run_id>.result.json`; a runner killed before reading it left
    that file beside the records, and `runs clean` removed only its staging folder."""
    out, _, _ = two_runs
    dead = "20260101T000000Z_0000dead"
    (out / "_staging" / dead / "copy").mkdir(parents=True)
    result = out / "_runs" / f".{dead}.result.json"
    result.write_text('{"ok":true,"result":{"status":"ok"},"unsafe":null,"error":null}')
    cleaned = site.cli("runs", "clean", str(out))
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed {out / '_staging' / dead} (no record)" in cleaned.stdout
    assert not result.exists()
    assert not (out / "_staging").exists()


def test_runs_show_marks_the_fields_an_older_record_lacks(site, two_runs):
    out, _, newer = two_runs
    edit(newer, lambda data: [data.pop(key) for key in ("dataset", "timeout_s", "isolate")])
    result = site.cli("runs", "show", str(out), newer.stem)
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if ":  " in line)
    assert lines["isolate:"] == "(not in this record)"
    assert lines["timeout_s:"] == "(not in this record)"
    assert lines["status:"] == "succeeded"
    as_json = json.loads(site.cli("runs", "show", str(out), newer.stem, "--json").stdout)
    assert as_json["isolate"] is False and as_json["timeout_s"] is None


def test_rerun_of_an_older_record_names_what_it_could_not_repeat(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out, timeout=90, isolate=True)
    assert rerun(out, original.run_id, new_out=tmp_path / "now").unrecorded == []
    path = out / "_runs" / f"{original.run_id}.json"
    edit(path, lambda data: [data.pop(key) for key in ("timeout_s", "isolate", "dataset")])

    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.same_outputs
    assert (report.record.timeout_s, report.record.isolate) == (None, False)
    assert report.unrecorded == [
        "--timeout and --isolate: not in the record (an older release); the rerun ran "
        "without a timeout and in-process",
        "dataset: not in the record (it predates dataset fingerprints); the dataset could "
        "not be compared",
    ]
    result = site.cli("rerun", str(out), original.run_id, "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert (
        "not recorded:  --timeout and --isolate: not in the record (an older release); the "
        "rerun ran with --timeout 30 and in-process"
    ) in result.stdout


def place_old(name: str, out: Path, dataset: Path) -> Path:
    text = (OLD / f"{name}.json").read_text()
    text = text.replace("{out}", str(out)).replace("{dataset}", str(dataset))
    data = json.loads(text)
    if "batch_id" in data:
        path = out / "_batches" / f"{data['batch_id']}.json"
    else:
        path = out / "_runs" / f"{data['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "notes"),
    [
        ("7c3f1a3-python", ["--timeout and --isolate", "dataset"]),
        ("cf12f00-container", ["--timeout", "container limits and mounts", "dataset"]),
        ("2449d82-python-isolated", ["--timeout and --isolate"]),
        ("ecbe986-python", []),
    ],
)
def test_records_of_earlier_releases_are_read_and_their_gaps_named(
    site, dataset, tmp_path, name, notes
):
    out = tmp_path / "out"
    path = place_old(name, out, dataset)
    record = read_record(path)
    assert record.status == "succeeded"
    said = unrecorded(record, msgspec.json.decode(path.read_bytes()), None)
    assert [note.split(":")[0] for note in said] == notes
    listed = site.cli("runs", "list", str(out))
    assert listed.returncode == 0 and record.run_id in listed.stdout, listed.stderr
    assert site.cli("runs", "show", str(out), record.run_id, "--json").returncode == 0


def test_a_batch_summary_of_an_earlier_release_is_listed(site, dataset, tmp_path):
    out = tmp_path / "out"
    place_old("cf12f00-batch", out, dataset)
    result = site.cli("batches", "show", str(out), "latest")
    assert result.returncode == 0, result.stderr
    assert "RuntimeError: told to fail" in result.stdout
    assert os.path.basename(str(out)) in result.stdout


def test_batches_show_of_a_moved_batch_names_where_it_is_now(site, tmp_path):
    """Old results get archived: the summary's own out_dir is where the batch ran."""
    site.plugin("copy", run_source=COPY)
    data = tmp_path / "data"
    (data / "sessions" / "ses-01").mkdir(parents=True)
    (data / "sessions" / "ses-01" / "x.txt").write_text("x")
    ran = tmp_path / "batch"
    summary = run_batch("copy", dataset=data, out=ran, sessions="*", jobs=1)
    archive = tmp_path / "archive" / "2026"
    archive.parent.mkdir()
    ran.rename(archive)
    result = site.cli("batches", "show", str(archive), "latest")
    assert result.returncode == 0, result.stderr
    assert f"outputs:  {archive}/<session>/" in result.stdout
    assert f"summary:  {archive}/_batches/{summary.batch_id}.json" in result.stdout
    assert str(ran) not in result.stdout


def test_resume_runs_a_session_again_whose_newest_record_cannot_be_read(site, tmp_path):
    site.plugin("copy", run_source=COPY)
    data = _two_sessions(tmp_path / "data")
    out = tmp_path / "batch"
    run_batch("copy", dataset=data, out=out, sessions="*", jobs=1)
    [record] = (out / "ses-02" / "_runs").glob("*.json")
    edit(record, lambda doc: doc.update(schema="mdivicomtools.run.v2"))
    again = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    by_session = {result.session: result for result in again.sessions}
    assert by_session["ses-01"].status == "skipped"
    assert by_session["ses-02"].status == "succeeded"
    assert by_session["ses-02"].reason == (
        f"the run record '{record}' cannot be read: its schema is 'mdivicomtools.run.v2', "
        "not 'mdivicomtools.run.v1', the layout this version of mdivicomtools reads; a newer "
        "mdivicomtools or another tool wrote it"
    )
