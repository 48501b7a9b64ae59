"""--retries on the local and Dask executors, the records of lost workers, `batches list/show`,
container plugins from local and Dask workers with one image check per batch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mdivicomtools.authoring.sampledata import make_sample_dataset as make_dataset
from mdivicomtools.batch import run_batch
from pluginsite import MDIVICOM, count_wavs_manifest

FLAKY_PLUGIN = """
import json, os, pathlib, posix
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    session = pathlib.Path(dataset_dir).name
    tries = pathlib.Path(config["tries_dir"], session)
    tries.mkdir(exist_ok=True)
    number = len(list(tries.iterdir())) + 1
    (tries / str(number)).write_text("")
    pathlib.Path(out_dir, "try.json").write_text(json.dumps(number))
    if session in config.get("die_first", []) and number == 1:
        posix._exit(9)  # the worker dies (os._exit is caught as a recorded HardExit)
    if session in config.get("fail_first", []) and number == 1:
        raise RuntimeError("flaky recording in " + session)
    if session in config.get("always_fail", []):
        raise RuntimeError("broken recording in " + session)
    return {"try": number}
"""


@pytest.fixture
def flaky(site, tmp_path):
    site.plugin("flaky", run_source=FLAKY_PLUGIN)
    tries = tmp_path / "tries"
    tries.mkdir()
    return make_dataset(tmp_path / "study", sessions=4), tries


def records(session_out: Path) -> list[dict]:
    return sorted(
        (json.loads(p.read_text()) for p in (session_out / "_runs").glob("*.json")),
        key=lambda r: r["attempt"],
    )


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_failed_and_lost_sessions_are_retried(flaky, tmp_path, executor):
    study, tries = flaky
    out = tmp_path / "out"
    config = {"tries_dir": str(tries), "fail_first": ["ses-02"], "always_fail": ["ses-04"]}
    if executor == "local":  # a dead worker process; Dask reruns those itself (below)
        config["die_first"] = ["ses-03"]
    summary = run_batch(
        "flaky",
        dataset=study,
        out=out,
        sessions="ses-*",
        jobs=2,
        executor=executor,
        retries=2,
        config=config,
    )
    assert summary.status == "failed" and summary.retries == 2
    assert summary.totals == {"succeeded": 3, "failed": 1}
    expected = {"ses-01": 1, "ses-02": 2, "ses-03": 2 if executor == "local" else 1, "ses-04": 3}
    assert summary.attempts == expected
    by_session = {r.session: r for r in summary.sessions}
    assert [e.error for e in by_session["ses-02"].earlier] == [
        "RuntimeError: flaky recording in ses-02"
    ]
    assert [e.attempt for e in by_session["ses-04"].earlier] == [1, 2]
    assert by_session["ses-04"].error == "RuntimeError: broken recording in ses-04"
    for session, tries_taken in expected.items():
        found = records(out / session)
        assert [r["attempt"] for r in found] == list(range(1, tries_taken + 1))
        assert found[-1]["run_id"] == by_session[session].run_id
        assert not (out / session / "_staging").exists()
    if executor == "local":
        lost, retried = records(out / "ses-03")
        assert (lost["status"], lost["error"]["type"]) == ("failed", "WorkerLost")
        assert lost["error"]["message"] == "WorkerDied: the worker process died (exit status 9)"
        assert retried["status"] == "succeeded"
        assert json.loads((out / "ses-03" / "flaky" / "try.json").read_text()) == 2


def test_a_worker_lost_on_dask_leaves_a_record_not_debris(flaky, tmp_path):
    # the LocalCluster reruns a lost worker's task once by itself; the lost try
    # still gets its record and its staging is removed
    study, tries = flaky
    out = tmp_path / "out"
    summary = run_batch(
        "flaky",
        dataset=study,
        out=out,
        sessions="ses-0[12]",
        jobs=2,
        executor="dask",
        config={"tries_dir": str(tries), "die_first": ["ses-02"]},
    )
    assert summary.totals == {"succeeded": 2}
    lost, rerun = sorted(records(out / "ses-02"), key=lambda r: r["started_at"])
    # Dask's own rerun of the task finds the lost try's `running` record first: its
    # runner is gone, so that run marks it abandoned and removes its staging
    assert (lost["status"], lost["error"]["type"]) == ("abandoned", "Abandoned")
    assert rerun["status"] == "succeeded" and rerun["run_id"] == summary.sessions[1].run_id
    assert not (out / "ses-02" / "_staging").exists()


def test_no_retries_without_the_option(flaky, tmp_path):
    study, tries = flaky
    summary = run_batch(
        "flaky",
        dataset=study,
        out=tmp_path / "out",
        sessions="ses-0[12]",
        jobs=1,
        config={"tries_dir": str(tries), "fail_first": ["ses-02"]},
    )
    assert summary.totals == {"succeeded": 1, "failed": 1}
    assert summary.attempts == {"ses-01": 1, "ses-02": 1}
    assert all(not r.earlier for r in summary.sessions)


def test_progress_counts_sessions_not_tries(site, flaky, tmp_path):
    # a retried try used to be counted as a finished session: `ses-02 failed: ... (4/3)`
    study, tries = flaky
    config = {"tries_dir": str(tries), "fail_first": ["ses-02"], "always_fail": ["ses-03"]}
    events: list[tuple[str, str, int]] = []
    run_batch(
        "flaky",
        dataset=study,
        out=tmp_path / "api",
        sessions="ses-0[1-3]",
        jobs=1,
        retries=1,
        config=config,
        on_event=lambda kind, job, result: events.append((kind, job.session, job.attempt)),
    )
    finished = sorted(event for event in events if event[0] != "started")
    assert finished == [
        ("finished", "ses-01", 1),
        ("finished", "ses-02", 2),
        ("finished", "ses-03", 2),
        ("retrying", "ses-02", 1),
        ("retrying", "ses-03", 1),
    ]

    for folder in tries.iterdir():  # the plugin counts tries here; start again
        for done in folder.iterdir():
            done.unlink()
    result = site.cli(
        "run",
        "flaky",
        *("--dataset", str(study), "--out", str(tmp_path / "cli"), "--sessions", "ses-0[1-3]"),
        *("--jobs", "1", "--retries", "1", "--config", json.dumps(config)),
    )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[mdivicom] ses-")]
    assert sorted(lines) == [
        "[mdivicom] ses-01 succeeded (1/3)",
        "[mdivicom] ses-02 succeeded on try 2 (2/3)",
        "[mdivicom] ses-02 try 1 failed, retrying: RuntimeError: flaky recording in ses-02 (1/3)",
        "[mdivicom] ses-03 failed on try 2: RuntimeError: broken recording in ses-03 (3/3)",
        "[mdivicom] ses-03 try 1 failed, retrying: RuntimeError: broken recording in ses-03 (1/3)",
    ]


def test_retries_need_sessions_and_are_not_negative(site, flaky, tmp_path):
    study, _ = flaky
    single = site.cli(
        "run", "flaky", "--dataset", str(study), "--out", str(tmp_path / "o"), "--retries", "1"
    )
    assert single.returncode == 2
    assert "Error: --retries needs --sessions GLOB" in single.stderr
    negative = site.cli(
        "run",
        "flaky",
        "--dataset",
        str(study),
        "--out",
        str(tmp_path / "o"),
        "--sessions",
        "ses-*",
        "--retries",
        "-1",
    )
    assert negative.returncode == 2
    assert negative.stderr.strip() == "Error: --retries must be 0 or more, got -1"


def test_batches_list_and_show(site, flaky, tmp_path):
    study, tries = flaky
    out = tmp_path / "out"
    common = ["--dataset", str(study), "--out", str(out), "--sessions", "ses-0[12]"]
    config = json.dumps({"tries_dir": str(tries), "fail_first": ["ses-02"]})
    first = site.cli("run", "flaky", *common, "--config", config, "--json")
    assert first.returncode == 1, first.stderr
    second = site.cli(
        "run", "flaky", *common, "--config", config, "--resume", "--retries", "1", "--json"
    )
    assert second.returncode == 0, second.stderr
    first_id, second_id = (
        json.loads(first.stdout)["batch_id"],
        json.loads(second.stdout)["batch_id"],
    )

    listing = subprocess.run(
        [MDIVICOM, "batches", "list", str(out)], capture_output=True, text=True, check=True
    )
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["BATCH_ID", "STATUS", "EXECUTOR", "PLUGIN", "DURATION", "SESSIONS"]
    assert lines[1].startswith(f"{first_id}  failed     local")
    assert lines[1].endswith("1 failed, 1 succeeded")
    assert lines[2].startswith(f"{second_id}  succeeded  local")
    assert lines[2].endswith("1 skipped, 1 succeeded")

    as_json = subprocess.run(
        [MDIVICOM, "batches", "list", str(out), "--json"], capture_output=True, text=True
    )
    assert [b["batch_id"] for b in json.loads(as_json.stdout)] == [first_id, second_id]

    shown = subprocess.run(
        [MDIVICOM, "batches", "show", str(out), "latest"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert f"batch:     {second_id}" in shown.stdout
    assert "retries:   1" in shown.stdout
    (ses02,) = [line for line in shown.stdout.splitlines() if line.startswith("ses-02")]
    assert ses02.split()[:3] == ["ses-02", "succeeded", "1"]
    (ses01,) = [line for line in shown.stdout.splitlines() if line.startswith("ses-01")]
    assert ses01.split()[:3] == ["ses-01", "skipped", "-"]

    by_id = subprocess.run(
        [MDIVICOM, "batches", "show", str(out), first_id, "--json"], capture_output=True, text=True
    )
    summary = json.loads(by_id.stdout)
    assert summary["batch_id"] == first_id and summary["totals"] == {"succeeded": 1, "failed": 1}
    failed = [s for s in summary["sessions"] if s["status"] == "failed"]
    assert failed[0]["error"] == "RuntimeError: flaky recording in ses-02"

    # as `runs show`: a start of an id that only one batch has
    by_prefix = subprocess.run(
        [MDIVICOM, "batches", "show", str(out), first_id[:-1], "--json"],
        capture_output=True,
        text=True,
    )
    assert json.loads(by_prefix.stdout)["batch_id"] == first_id, by_prefix.stderr
    several = subprocess.run(
        [MDIVICOM, "batches", "show", str(out), "2"], capture_output=True, text=True
    )
    assert several.returncode == 2
    assert several.stderr.startswith("Error: '2' is the start of several batch ids (")

    unknown = subprocess.run(
        [MDIVICOM, "batches", "show", str(out), "20000101T000000Z_nope"],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("Error: no batch '20000101T000000Z_nope' under ")
    assert "see `mdivicom batches list OUT`" in unknown.stderr

    empty = subprocess.run(
        [MDIVICOM, "batches", "show", str(tmp_path), "latest"], capture_output=True, text=True
    )
    assert empty.returncode == 2
    assert "no batches under" in empty.stderr


@pytest.mark.engines
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_container_image_is_checked_once_per_batch(site, tmp_path, engine, monkeypatch, executor):
    from engines import TEST_IMAGE
    from mdivicomtools.execution.container.runtime import ContainerBackend

    checked = []
    original = ContainerBackend.preflight

    def counting(self, request):
        checked.append(request.dataset_dir.name)
        return original(self, request)

    monkeypatch.setattr(ContainerBackend, "preflight", counting)
    site.manifest("count.json", count_wavs_manifest(TEST_IMAGE))
    study = make_dataset(tmp_path / "study", sessions=4)
    out = tmp_path / "out"
    summary = run_batch(
        "count-wavs",
        dataset=study,
        out=out,
        sessions="ses-*",
        jobs=2,
        backend=engine,
        executor=executor,
    )
    assert summary.totals == {"succeeded": 4}, summary.sessions
    for index in range(1, 5):
        assert (out / f"ses-{index:02d}" / "count-wavs" / "n").read_text().strip() == "2"
    # the plan checked (and would have pulled) the image once; the sessions ran in
    # worker processes, whose own checks of the image are not counted here
    assert checked == ["ses-01"]


def test_a_stopped_batch_records_a_session_run_cut_short_as_interrupted(site, tmp_path):
    """Ctrl-C on a terminal reaches a local worker twice; the second could cut the
    session run's last write short, so its record still said `running` when the
    worker reported the session interrupted. The batch then recorded that run
    `failed` (WorkerLost: "the scheduler ran the session again"), contradicting its
    own summary. It failed a CI rehearsal, and at times 1 to 3 of 20 repeats of
    test_ctrl_c_on_a_terminal_interrupts_a_local_batch_cleanly."""
    import msgspec

    from mdivicomtools import run_plugin
    from mdivicomtools.batch.retry import settle
    from mdivicomtools.batch.session import SessionJob, SessionResult
    from mdivicomtools.model.layout import STAGING_DIR, runs_dir
    from mdivicomtools.model.options import RunOptions
    from mdivicomtools.records.store import read_record, write_record

    site.plugin("noop", run_source="def run(*a, **k):\n    return {}\n")
    dataset = make_dataset(tmp_path / "study", sessions=1) / "sessions" / "ses-01"
    out = tmp_path / "out" / "ses-01"
    done = run_plugin("noop", dataset=dataset, out=out)
    # a second try of the session whose run was cut short after it started
    cut = msgspec.structs.replace(done, run_id="20991231T000000Z_cut", status="running")
    write_record(runs_dir(out) / f"{cut.run_id}.json", cut)
    (out / STAGING_DIR / cut.run_id / "noop").mkdir(parents=True)
    job = SessionJob(
        session="ses-01",
        ref=done.plugin.ref,
        options=RunOptions(dataset=str(dataset), out=str(out), attempt=2),
    )
    reported = SessionResult(session="ses-01", status="interrupted", out=str(out))
    settled = settle(job, reported, done.plugin, interrupted=True)
    assert settled.status == "interrupted"
    record = read_record(runs_dir(out) / f"{cut.run_id}.json")
    assert record.status == "interrupted", record.error
    assert record.error is not None and record.error.type == "WorkerLost"
    assert "the batch was stopped while this session ran" in record.error.message
    assert not (out / STAGING_DIR / cut.run_id).exists()
