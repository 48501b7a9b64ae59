"""Batch runs over sessions: local executor, resume, Ctrl-C, Dask, containers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engines import TEST_IMAGE
from mdivicomtools.authoring.sampledata import make_sample_dataset as make_dataset
from mdivicomtools.batch import BatchValidationFailed, run_batch
from pluginsite import MDIVICOM, cli_without_dac, count_wavs_manifest, interruptible, unreadable

SESSION_PLUGIN = """
import json, os, pathlib, sys, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    session = pathlib.Path(dataset_dir).name
    fail_marker = pathlib.Path(config.get("fail_marker", "/nonexistent"))
    if fail_marker.exists() and session in fail_marker.read_text().split():
        raise RuntimeError("bad recording in " + session)
    if session == config.get("die_in"):
        # a worker dying outright; os._exit itself is caught in-process (HardExit)
        import posix
        posix._exit(9)
    if config.get("slow_after") and session > config["slow_after"]:
        pathlib.Path(config["started_dir"], session).write_text(str(os.getpid()))
        time.sleep(60)
    wavs = sorted(p.name for p in pathlib.Path(dataset_dir).rglob("*.wav"))
    pathlib.Path(out_dir, "streams.json").write_text(json.dumps(wavs))
    # a spawned worker is a fresh interpreter started with this flag
    return {"session": session, "pid": os.getpid(),
            "spawned": "--multiprocessing-fork" in sys.orig_argv}
"""


#: a session that says it started and then waits for the test to open its gate
GATED_PLUGIN = """
import os, pathlib, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    session = pathlib.Path(dataset_dir).name
    pathlib.Path(config["started_dir"], session).write_text(str(os.getpid()))
    gate = pathlib.Path(config["gate"])
    deadline = time.monotonic() + 90
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pathlib.Path(out_dir, "done").write_text(session)
    return {"session": session}
"""


@pytest.fixture
def study(tmp_path):
    return make_dataset(tmp_path / "study", sessions=8)


@pytest.fixture
def session_plugin(site):
    site.plugin("per-session", run_source=SESSION_PLUGIN)
    return site


def summary_of(out: Path) -> dict:
    (path,) = sorted((out / "_batches").glob("*.json"))[-1:]
    return json.loads(path.read_text())


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_executor_runs_every_session(session_plugin, study, tmp_path, jobs):
    out = tmp_path / "out"
    summary = run_batch("per-session", dataset=study, out=out, sessions="ses-*", jobs=jobs)
    assert summary.status == "succeeded" and summary.totals == {"succeeded": 8}
    assert summary.executor == "local" and summary.jobs == jobs and summary.scheduler is None
    assert [r.session for r in summary.sessions] == [f"ses-{i:02d}" for i in range(1, 9)]
    for result in summary.sessions:
        session_out = out / result.session
        assert json.loads((session_out / "per-session" / "streams.json").read_text()) == [
            "str-cam1.wav",
            "str-cam2.wav",
        ]
        (record,) = [json.loads(p.read_text()) for p in (session_out / "_runs").glob("*.json")]
        assert record["run_id"] == result.run_id and record["status"] == "succeeded"
        assert record["dataset_dir"] == str(study / "sessions" / result.session)
    pids = {json.loads(p.read_text())["result"]["pid"] for p in out.glob("*/_runs/*.json")}
    assert os.getpid() not in pids  # sessions ran in worker processes
    assert summary_of(out)["batch_id"] == summary.batch_id


def test_a_batch_whose_progress_reader_went_away_still_writes_its_summary(
    session_plugin, study, tmp_path, monkeypatch
):
    """`mdivicom run --sessions ... 2>&1 | head -2`: the next line's BrokenPipeError
    ended the batch process, so no summary was written (`batches list` was empty)."""
    from mdivicomtools.cli import batch_view

    lines: list[str] = []

    def progress(message: str) -> None:
        if lines:
            raise BrokenPipeError(32, "Broken pipe")
        lines.append(message)

    def echo(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(batch_view.click, "echo", echo)
    view = batch_view.BatchProgress(8)
    out = tmp_path / "out"
    summary = run_batch(
        "per-session",
        dataset=study,
        out=out,
        sessions="ses-*",
        jobs=2,
        progress=progress,
        on_start=lambda total: None,
        on_event=view.event,
    )
    view.close()
    assert summary.status == "succeeded" and summary.totals == {"succeeded": 8}
    assert summary_of(out)["batch_id"] == summary.batch_id
    assert len(lines) == 1


def test_a_caller_running_threads_gets_spawned_workers(
    session_plugin, study, tmp_path, monkeypatch
):
    """Forking a process that runs other threads can leave a lock held for ever in
    the child (a Dask worker forked that way once hung this suite on a log
    stream's lock); a caller with threads (a Jupyter kernel, a Dask client) gets
    spawned workers, which run the same sessions with the same guarantees, a
    worker death included."""
    import threading
    import warnings

    from mdivicomtools.batch.local import start_method

    with monkeypatch.context() as patched:  # the command line's case: no other thread
        patched.setattr(threading, "active_count", lambda: 1)
        assert start_method() == "fork"
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    try:
        assert start_method() == "spawn"
        out = tmp_path / "out"
        with warnings.catch_warnings():
            # Python 3.12+ warns when a multi-threaded process forks: it must not
            warnings.filterwarnings(
                "error", message=".*multi-threaded.*fork", category=DeprecationWarning
            )
            summary = run_batch(
                "per-session",
                dataset=study,
                out=out,
                sessions="ses-0[1-4]",
                jobs=2,
                config={"die_in": "ses-03"},
            )
    finally:
        stop.set()
        busy.join()
    assert summary.totals == {"succeeded": 3, "failed": 1}, summary.sessions
    (dead,) = [r for r in summary.sessions if r.status == "failed"]
    assert dead.session == "ses-03"
    assert dead.error == "WorkerDied: the worker process died (exit status 9)"
    records = [json.loads(p.read_text()) for p in out.glob("*/_runs/*.json")]
    pids = {r["result"]["pid"] for r in records if r["status"] == "succeeded"}
    assert len(pids) == 3 and os.getpid() not in pids


def _batch_cli(site, study, out, sessions, *options):
    """`mdivicom run per-session --dataset STUDY --out OUT --sessions GLOB OPTIONS`."""
    return site.cli(
        "run",
        "per-session",
        "--dataset",
        str(study),
        "--out",
        str(out),
        "--sessions",
        sessions,
        *options,
    )


def test_a_failing_session_fails_only_itself(session_plugin, study, tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("ses-03")
    out = tmp_path / "out"
    result = _batch_cli(
        session_plugin,
        study,
        out,
        "ses-*",
        "--jobs",
        "2",
        "--set",
        f"fail_marker={marker}",
        "--json",
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert summary["totals"] == {"succeeded": 7, "failed": 1}
    (failed,) = [s for s in summary["sessions"] if s["status"] == "failed"]
    assert failed["session"] == "ses-03"
    assert failed["error"] == "RuntimeError: bad recording in ses-03"
    assert not (out / "ses-03" / "per-session").exists()
    assert "[mdivicom] ses-03 failed: RuntimeError: bad recording in ses-03" in result.stderr


def test_batch_json_matches_its_published_schema(session_plugin, study, tmp_path):
    """A script checks what it parses against docs/schemas/, as for a run record; the
    batch summary (printed by `run --sessions --json` and `batches show --json`) had
    no schema there."""
    import jsonschema

    schema_file = Path(__file__).parents[1] / "docs" / "schemas" / "batch-summary.schema.json"
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    marker = tmp_path / "fail"
    marker.write_text("ses-02")
    out = tmp_path / "out"
    result = _batch_cli(
        session_plugin, study, out, "ses-0[1-3]", "--retries", "1",
        "--set", f"fail_marker={marker}", "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    printed = json.loads(result.stdout)
    assert printed["totals"] == {"succeeded": 2, "failed": 1}
    assert printed["sessions"][1]["earlier"], "the retried session's first try"
    shown = session_plugin.cli("batches", "show", str(out), "latest", "--json")
    listed = session_plugin.cli("batches", "list", str(out), "--json")
    for document in (printed, summary_of(out), json.loads(shown.stdout)):
        assert list(validator.iter_errors(document)) == []
    assert [list(validator.iter_errors(item)) for item in json.loads(listed.stdout)] == [[]]
    printed["status"] = "halfway"  # the schema holds the batch to its statuses
    assert list(validator.iter_errors(printed))


def test_resume_after_a_partial_failure(session_plugin, study, tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("ses-02 ses-05")
    out = tmp_path / "out"
    common = dict(
        dataset=study, out=out, sessions="ses-*", jobs=2, config={"fail_marker": str(marker)}
    )
    first = run_batch("per-session", **common)
    assert first.totals == {"succeeded": 6, "failed": 2}
    marker.write_text("")  # the recordings were fixed
    messages = []
    second = run_batch("per-session", resume=True, progress=messages.append, **common)
    assert second.status == "succeeded"
    assert second.totals == {"skipped": 6, "succeeded": 2}
    ran = sorted(r.session for r in second.sessions if r.status == "succeeded")
    assert ran == ["ses-02", "ses-05"]
    skipped = [r for r in second.sessions if r.status == "skipped"]
    assert skipped[0].reason.startswith("succeeded in run ")
    assert skipped[0].reason.endswith("with per-session 1.0.0 and the same config")
    # a skipped session did not fail: its summary entry has no error (it held the reason)
    assert [r.error for r in skipped] == [None] * 6
    written = json.loads((out / "_batches" / f"{second.batch_id}.json").read_text())
    assert {s["error"] for s in written["sessions"] if s["status"] == "skipped"} == {None}
    assert messages[0] == (
        "resume: skipping 6 session(s) whose latest run of lab/per-session "
        "1.0.0 succeeded with the same config"
    )
    changed = run_batch(
        "per-session",
        resume=True,
        overwrite=True,
        **{**common, "config": {"fail_marker": str(marker), "v": 2}},
    )
    assert changed.totals == {"succeeded": 8}  # a different config is not resumed


def test_problems_are_reported_once_before_anything_runs(site, study, tmp_path):
    site.plugin(
        "strict", config_schema={"type": "object", "required": ["ref"]}, run_source=SESSION_PLUGIN
    )
    with pytest.raises(BatchValidationFailed) as excinfo:
        run_batch("strict", dataset=study, out=tmp_path / "out", sessions="ses-*")
    assert excinfo.value.common == ["config: 'ref' is a required property"]
    assert excinfo.value.per_session == {}
    assert str(excinfo.value).count("required property") == 1
    assert not (tmp_path / "out").exists()


def test_session_glob_that_matches_nothing_is_exit_2(session_plugin, study, tmp_path):
    result = _batch_cli(session_plugin, study, tmp_path / "o", "sub-*")
    assert result.returncode == 2
    assert "--sessions 'sub-*' matches no folder" in result.stderr
    # eight sessions: five named, and a mark that the list goes on
    assert "(there are: ses-01, ses-02, ses-03, ses-04, ses-05, ... (8 in all))" in result.stderr
    no_sessions = session_plugin.cli(
        "run",
        "per-session",
        "--dataset",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--jobs",
        "2",
    )
    assert no_sessions.returncode == 2
    assert no_sessions.stderr.splitlines()[-1] == (
        "Error: --jobs needs --sessions GLOB (a batch, one run per session); add it, or leave "
        "it out for a single run"
    )


def test_sessions_glob_follows_the_shell_and_spares_the_run_roots_folders(
    session_plugin, study, tmp_path
):
    """`*` ran a dot-folder (a shell's `*` skips it) and a folder named `_batches`,
    whose output went in beside the batch summaries."""
    (study / "sessions" / ".hidden").mkdir()
    summary = run_batch("per-session", dataset=study, out=tmp_path / "o", sessions="*")
    assert [r.session for r in summary.sessions] == [f"ses-{i:02d}" for i in range(1, 9)]
    dotted = run_batch("per-session", dataset=study, out=tmp_path / "d", sessions=".*")
    assert [r.session for r in dotted.sessions] == [".hidden"]
    (study / "sessions" / "_batches").mkdir()
    result = _batch_cli(session_plugin, study, tmp_path / "b", "*")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: --sessions '*' matches _batches in "), line
    assert "named as a folder of the run root itself (<out>/_batches/)" in line, line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--slurm-partition", "debug"],
        ["--slurm-time", "00:10:00"],
        ["--slurm-mem", "4GB"],
        ["--slurm-cpus", "2"],
        ["--slurm-account", "lab"],
        ["--slurm-directive", "--qos=short"],
    ],
)
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_slurm_options_without_the_slurm_executor_are_refused(
    session_plugin, study, tmp_path, option, executor
):
    """They were ignored in silence, while --scheduler without dask was refused."""
    result = _batch_cli(
        session_plugin, study, tmp_path / "o", "ses-01", "--executor", executor, *option
    )
    assert result.returncode == 2, result.stderr
    assert "the --slurm-* options set the worker jobs of --executor slurm" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_worker_that_dies_fails_its_session_only(session_plugin, study, tmp_path):
    summary = run_batch(
        "per-session",
        dataset=study,
        out=tmp_path / "out",
        sessions="ses-*",
        jobs=2,
        config={"die_in": "ses-04"},
    )
    assert summary.totals == {"succeeded": 7, "failed": 1}
    (dead,) = [r for r in summary.sessions if r.status == "failed"]
    assert dead.session == "ses-04"
    assert dead.error == "WorkerDied: the worker process died (exit status 9)"
    # the record the batch wrote for it: what the batch knows, not placeholders
    (record,) = (tmp_path / "out" / "ses-04" / "_runs").glob("*.json")
    written = json.loads(record.read_text())
    assert written["run_id"] == dead.run_id and written["error"]["type"] == "WorkerLost"
    assert dead.duration_s == written["duration_s"]
    assert written["backend"]["name"] == "python"
    assert written["dataset_dir"] == str(study / "sessions" / "ses-04")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_interrupting_a_batch_keeps_finished_sessions(session_plugin, study, tmp_path, sig):
    started = tmp_path / "started"
    started.mkdir()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            MDIVICOM,
            "run",
            "per-session",
            "--dataset",
            str(study),
            "--out",
            str(out),
            "--sessions",
            "ses-*",
            "--jobs",
            "2",
            "--set",
            "slow_after=ses-04",
            "--set",
            f"started_dir={started}",
            "--json",
        ],
        env=session_plugin.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 60
    while len(list(started.iterdir())) < 2:
        assert time.monotonic() < deadline, "the slow sessions never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    # the line every command ends with on a signal (docs/reference/exit-codes.md);
    # a batch ended with its summary's path, and nothing said what stopped it
    name = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else sig.name
    assert stderr.strip().splitlines()[-1] == f"Error: interrupted by {name}", stderr
    summary = json.loads(stdout)
    assert summary["status"] == "interrupted"
    by_status = {}
    for session in summary["sessions"]:
        by_status.setdefault(session["status"], []).append(session["session"])
    assert by_status["succeeded"] == ["ses-01", "ses-02", "ses-03", "ses-04"]
    assert by_status["interrupted"] == ["ses-05", "ses-06"]
    assert by_status["not_started"] == ["ses-07", "ses-08"]
    # a session that never started took no try
    assert summary["attempts"]["ses-07"] == summary["attempts"]["ses-08"] == 0
    errors = {s["session"]: s["error"] for s in summary["sessions"]}
    for session in ("ses-05", "ses-06"):
        (record,) = [json.loads(p.read_text()) for p in (out / session / "_runs").glob("*.json")]
        assert record["status"] == "interrupted"
        # the summary said only "interrupted", where the record names the signal
        assert errors[session] == f"Interrupted: {record['error']['message']}"
        assert record["error"]["message"].startswith(f"interrupted by {name}")
        assert not (out / session / "per-session").exists()
    assert (out / "ses-01" / "per-session" / "streams.json").exists()


def _slow_batch(session_plugin, study, tmp_path, sessions: str, *extra: str):
    """A batch on one worker whose sessions (all but ses-00) sleep a minute and write
    their pid to started/<session> first: (the process, the started folder)."""
    started = tmp_path / "started"
    started.mkdir()
    proc = subprocess.Popen(
        [
            *(MDIVICOM, "run", "per-session", "--dataset", str(study)),
            *("--out", str(tmp_path / "out"), "--sessions", sessions, "--jobs", "1", *extra),
            *("--set", "slow_after=ses-00", "--set", f"started_dir={started}"),
        ],
        env=session_plugin.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, started


def _pid_of(started: Path, session: str) -> int:
    """The pid the slow `session` wrote when it started (waiting for it)."""
    deadline = time.monotonic() + 60
    while not (started / session).exists() or not (started / session).read_text():
        assert time.monotonic() < deadline, f"{session} never started"
        time.sleep(0.05)
    return int((started / session).read_text())


def test_a_session_interrupted_on_its_own_fails_the_batch(session_plugin, study, tmp_path):
    """A signal to one session's process (an operator stopping a stuck session)
    leaves that session without output while the batch goes on: the batch did not
    succeed, and exits 1 (it was not itself interrupted)."""
    proc, started = _slow_batch(session_plugin, study, tmp_path, "ses-0[12]", "--json")
    for session in ("ses-01", "ses-02"):  # one worker: each in turn, the batch going on
        os.kill(_pid_of(started, session), signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    summary = json.loads(stdout)
    assert summary["status"] == "failed", summary
    assert summary["totals"] == {"interrupted": 2}, summary


def test_an_interrupted_batch_from_python_says_which_and_where_its_summary_is(
    session_plugin, tmp_path
):
    """A notebook's interrupted `run_batch` showed `BatchSummaryInterrupted:
    20261128T211324Z_323f67be` and nothing else: not what was interrupted, what became
    of the sessions, nor where the summary is (`RunInterrupted` says all that)."""
    from mdivicomtools.batch import BatchSummaryInterrupted

    study = make_dataset(tmp_path / "study", sessions=3)
    started = tmp_path / "started"
    started.mkdir()

    def interrupt_once_both_run() -> None:
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    with pytest.raises(BatchSummaryInterrupted) as raised:
        run_batch(
            "per-session",
            dataset=study,
            out=tmp_path / "out",
            sessions="ses-*",
            jobs=2,
            sets=["slow_after=ses-00", f"started_dir={started}"],
        )
    summary = raised.value.summary
    assert summary.totals == {"interrupted": 2, "not_started": 1}, summary
    assert str(raised.value) == (
        f"batch {summary.batch_id} of {summary.plugin} was interrupted by Ctrl-C (SIGINT): "
        f"2 interrupted, 1 not_started; its summary is {summary.path}"
    )
    assert summary.path.is_file()


def test_a_batch_process_killed_outright_says_what_to_do_next(session_plugin, study, tmp_path):
    """The supervisor's message for a runner killed by SIGKILL advised --isolate, which
    a batch (whose sessions run in worker processes already) cannot use."""
    proc, started = _slow_batch(session_plugin, study, tmp_path, "ses-0[12]", "--json")
    _pid_of(started, "ses-01")
    # the supervisor's child is the batch process (its sessions run in workers below it)
    [batch] = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    os.kill(int(batch), signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    # --json: one document on stdout, as for every error (it printed nothing)
    error = json.loads(stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("RunnerCrashed", 1)
    assert stderr.strip().splitlines()[-1] == f"Error: {error['message']}"
    assert stderr.strip().splitlines()[-1] == (
        "Error: the batch process died from SIGKILL (the kernel's OOM killer, or kill -9) and "
        "did not finish its batch summary (`mdivicom batches list OUT` shows it abandoned); "
        "each session's record says where it got to (mdivicom runs list OUT), and --resume "
        "runs the rest"
    )
    # a script polling the summary is not left waiting on `running` for ever
    [listed] = json.loads(
        session_plugin.cli("batches", "list", str(tmp_path / "out"), "--json").stdout
    )
    assert (listed["status"], listed["totals"]) == ("abandoned", {"pending": 2})
    assert summary_of(tmp_path / "out")["status"] == "running"  # as written


def test_a_running_batch_can_be_polled_from_its_summary_file(session_plugin, study, tmp_path):
    """A script that did not start the batch (cron did) found nothing under
    `_batches/` until the batch had ended, and `batches list` said there was none;
    the summary is now written `running` at the start and as each session ends."""
    started = tmp_path / "started"
    started.mkdir()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            *(MDIVICOM, "run", "per-session", "--dataset", str(study), "--out", str(out)),
            *("--sessions", "ses-0[1-3]", "--jobs", "1", "--json"),
            *("--set", "slow_after=ses-01", "--set", f"started_dir={started}"),
        ],
        env=session_plugin.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _pid_of(started, "ses-02")  # ses-01 has ended, ses-02 sleeps
    deadline = time.monotonic() + 30
    while summary_of(out)["totals"] != {"succeeded": 1, "pending": 2}:
        assert time.monotonic() < deadline, (summary_of(out)["totals"], summary_of(out)["sessions"])
        time.sleep(0.05)
    shown = json.loads(session_plugin.cli("batches", "show", str(out), "latest", "--json").stdout)
    assert shown["status"] == "running", shown
    assert (shown["finished_at"], shown["duration_s"]) == (None, None)
    assert [s["session"] for s in shown["sessions"]] == ["ses-01"]
    table = session_plugin.cli("batches", "list", str(out)).stdout
    assert " running " in table and "2 pending, 1 succeeded" in table, table
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    final = json.loads(stdout)
    assert summary_of(out) == final  # the same file, now the final summary
    assert final["totals"] == {"succeeded": 1, "interrupted": 1, "not_started": 1}


def test_a_terminal_that_cannot_redraw_gets_a_line_per_session(session_plugin, study, tmp_path):
    """stderr a terminal with TERM=dumb (Emacs' shell, a CI runner's pty): rich draws
    its bar there only when it stops, so the batch showed nothing per session, and
    its bar came after the summary's line; it now gets the lines a pipe gets."""
    import pty

    main, other = pty.openpty()
    out = tmp_path / "out"
    with subprocess.Popen(
        [*(MDIVICOM, "run", "per-session", "--dataset", str(study), "--out", str(out)),
         *("--sessions", "ses-0[12]", "--jobs", "1")],
        env={**session_plugin.env(), "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=other,
    ) as proc:  # fmt: skip
        os.close(other)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the command has closed it
            while chunk := os.read(main, 65536):
                shown += chunk
        os.close(main)
    assert proc.returncode == 0, shown
    lines = shown.decode().replace("\r", "").splitlines()
    done = [line for line in lines if " succeeded (" in line]
    assert done == ["[mdivicom] ses-01 succeeded (1/2)", "[mdivicom] ses-02 succeeded (2/2)"]
    assert lines[-1].startswith("[mdivicom] summary: "), lines


def test_runs_list_understands_batch_outputs(session_plugin, study, tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("ses-02")
    out = tmp_path / "out"
    run_batch(
        "per-session",
        dataset=study,
        out=out,
        sessions="ses-0[123]",
        jobs=2,
        config={"fail_marker": str(marker)},
    )
    listing = subprocess.run(
        [MDIVICOM, "runs", "list", str(out), "--json"],
        capture_output=True,
        text=True,
        env=session_plugin.env(),
    )
    rows = json.loads(listing.stdout)
    assert [(r["session"], r["status"], r["runs"]) for r in rows] == [
        ("ses-01", "succeeded", 1),
        ("ses-02", "failed", 1),
        ("ses-03", "succeeded", 1),
    ]
    table = subprocess.run(
        [MDIVICOM, "runs", "list", str(out)], capture_output=True, text=True
    ).stdout.splitlines()
    assert table[0].split() == ["SESSION", "PLUGIN", "LATEST", "RUN_ID", "RUNS", "ERROR"]
    assert "RuntimeError: bad recording in ses-02" in table[2]


def test_dask_local_cluster(session_plugin, study, tmp_path):
    out = tmp_path / "out"
    # Dask's default HTTP port taken (a notebook's cluster, another batch): the
    # batch's scheduler serves elsewhere, with no warning on the terminal
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # already taken: just as good
            holder.bind(("127.0.0.1", 8787))
            holder.listen()
        result = _batch_cli(
            session_plugin, study, out, "ses-0[1-4]", "--executor", "dask", "--jobs", "2", "--json"
        )
    assert result.returncode == 0, result.stderr
    assert "8787" not in result.stderr, result.stderr
    summary = json.loads(result.stdout)
    assert summary["executor"] == "dask" and summary["scheduler"].startswith("tcp://127.0.0.1:")
    assert summary["totals"] == {"succeeded": 4}
    results = [json.loads(p.read_text())["result"] for p in out.glob("*/_runs/*.json")]
    # sessions ran in the cluster's worker processes (Dask decides how to spread them)
    assert 1 <= len({result["pid"] for result in results}) <= 2
    # spawned, not forked: the workers start from the client's IO-loop thread while
    # other threads run, and a forked one once stayed stuck on a log stream's lock
    assert [result["spawned"] for result in results] == [True] * 4


def _gated_batch(env, study, out, started, gate, *executor, **popen):
    """`run gated` over ses-01..04 on Dask (`executor`: its options), whose sessions
    wait for `gate` after writing started/<session>; the process, output as JSON."""
    return subprocess.Popen(
        [
            *(MDIVICOM, "run", "gated", "--dataset", str(study), "--out", str(out)),
            *("--sessions", "ses-0[1-4]", "--executor", "dask", *executor),
            *("--set", f"started_dir={started}", "--set", f"gate={gate}", "--json"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_a_second_ctrl_c_reports_the_sessions_as_their_records_say(site, study, tmp_path):
    """Sessions that finish while a second Ctrl-C closes the LocalCluster were
    reported `not_started`, with no run id, beside their `succeeded` records."""
    site.plugin("gated", run_source=GATED_PLUGIN)
    started, gate, out = tmp_path / "started", tmp_path / "gate", tmp_path / "out"
    started.mkdir()
    batch = _gated_batch(
        site.env(), study, out, started, gate, "--jobs", "2", preexec_fn=interruptible
    )
    ran = _wait_for_files(started, 2)
    batch.send_signal(signal.SIGINT)
    time.sleep(1.5)
    batch.send_signal(signal.SIGINT)
    # the sessions end while the batch closes the cluster
    time.sleep(0.5)
    gate.touch()
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130, stderr
    summary = json.loads(stdout)
    records = _records_by_session(out)
    assert sorted(records) == ran
    for session in summary["sessions"]:
        record = records.get(session["session"])
        if record is None:
            assert (session["status"], session["run_id"]) == ("not_started", None), session
        else:
            assert session["run_id"] == record["run_id"], session
            assert session["status"] == record["status"] != "running", session


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_address(file: Path, scheduler: subprocess.Popen, log: Path) -> str:
    """A scheduler takes seconds to import and bind (many more on a busy machine); the
    batch's client gives up after its connect timeout, so the test waits for the
    address it writes once it listens. It picks its own port: a port picked here
    and freed could be taken meanwhile (a Dask nanny of the other suite running
    beside this one answered there once), and the test then waited on it."""
    deadline = time.monotonic() + 120
    while True:
        assert scheduler.poll() is None, log.read_text()
        with contextlib.suppress(OSError, ValueError):
            return str(json.loads(file.read_text())["address"])
        assert time.monotonic() < deadline, "the Dask scheduler never listened: " + log.read_text()
        time.sleep(0.1)


class DaskProcesses:
    """A `dask scheduler` on loopback (listening when the block starts) and the
    workers a test starts on it; all of them ended when the block ends."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.dask = str(Path(sys.executable).with_name("dask"))
        self.env = env
        self.logs = logs
        self.address = ""  # the scheduler's, once it listens
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> DaskProcesses:
        self.logs.mkdir()
        file = self.logs / "scheduler.json"
        self._start(["scheduler", "--port", "0", "--scheduler-file", str(file)], "scheduler")
        self.address = _wait_for_address(file, self.processes[0], self.logs / "scheduler.log")
        return self

    def worker(self) -> subprocess.Popen:
        return self._start(
            ["worker", self.address, "--nthreads", "1", "--nworkers", "1"],
            f"worker-{len(self.processes)}",
        )

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [self.dask, *args, "--host", "127.0.0.1", "--no-dashboard"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.logs / f"{name}.log").open("w"),
        )
        self.processes.append(process)
        return process

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_dask_scheduler_and_two_workers_on_loopback(session_plugin, study, tmp_path):
    with DaskProcesses(session_plugin.env(), tmp_path / "dask-logs") as dask:
        workers = [dask.worker(), dask.worker()]
        out = tmp_path / "out"
        result = _batch_cli(
            session_plugin,
            study,
            out,
            "ses-*",
            "--executor",
            "dask",
            "--scheduler",
            dask.address,
            "--json",
        )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["scheduler"] == dask.address and summary["totals"] == {"succeeded": 8}
    pids = {json.loads(p.read_text())["result"]["pid"] for p in out.glob("*/_runs/*.json")}
    assert pids and not pids & {os.getpid()}
    assert len(pids) <= 2 + len(workers)


def _wait_for_files(folder: Path, count: int, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(names := sorted(p.name for p in folder.iterdir())) < count:
        assert time.monotonic() < deadline, f"only {names} started"
        time.sleep(0.05)
    return names


def _records_by_session(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.glob("*/_runs/*.json"):
        found[path.parent.parent.name] = json.loads(path.read_text())
    return found


def test_a_lost_scheduler_fails_the_batch_with_what_the_sessions_did(site, study, tmp_path):
    """The scheduler killed while two sessions run: their workers finish them, and the
    summary says so (it said `not_started`, "the batch was interrupted", for all);
    the loss is one line on stderr, not distributed's tracebacks."""
    site.plugin("gated", run_source=GATED_PLUGIN)
    started, gate, out = tmp_path / "started", tmp_path / "gate", tmp_path / "out"
    started.mkdir()
    env = site.env(DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    with DaskProcesses(env, tmp_path / "dask-logs") as dask:
        dask.worker(), dask.worker()
        batch = _gated_batch(env, study, out, started, gate, "--scheduler", dask.address)
        ran = _wait_for_files(started, 2)
        dask.processes[0].kill()
        dask.processes[0].wait()
        time.sleep(1)
        gate.touch()
        stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 1, stderr
    assert "Traceback" not in stderr and "distributed.client" not in stderr, stderr
    lost = f"the connection to the Dask scheduler at {dask.address} was lost"
    assert [line for line in stderr.splitlines() if line.startswith(f"[mdivicom] {lost}")]
    summary = json.loads(stdout)
    assert summary["status"] == "failed"
    records = _records_by_session(out)
    assert sorted(records) == ran
    for session in summary["sessions"]:
        if session["session"] in ran:
            record = records[session["session"]]
            assert record["status"] == "succeeded"
            assert (session["status"], session["run_id"]) == ("succeeded", record["run_id"])
            assert session["duration_s"] == record["duration_s"]
        else:
            assert session["status"] == "not_started" and session["run_id"] is None
            assert "interrupted" not in session["error"], session
            assert session["error"] == lost and session["attempt"] == 0, session


def test_a_scheduler_without_workers_says_what_the_batch_waits_for(
    session_plugin, study, tmp_path, monkeypatch
):
    """A batch sent to a scheduler with no worker used to wait in silence; it says
    what it waits for (once), and runs the sessions when a worker comes."""
    from mdivicomtools.batch import feeder

    monkeypatch.setattr(feeder, "WAITING_NOTE_S", 0.0)
    monkeypatch.setattr(feeder, "FIRST_WORKER_POLL_S", 0.5)
    said: list[str] = []
    with DaskProcesses(session_plugin.env(), tmp_path / "dask-logs") as dask:
        note = (
            f"waiting for a worker: the Dask scheduler at {dask.address} has none yet; "
            f"start one (`dask worker {dask.address}`), or Ctrl-C"
        )

        def progress(message: str) -> None:
            said.append(message)
            if message == note and len(dask.processes) == 1:
                dask.worker()

        summary = run_batch(
            "per-session",
            dataset=study,
            out=tmp_path / "out",
            sessions="ses-0[1-2]",
            executor="dask",
            scheduler=dask.address,
            progress=progress,
        )
        started = len(dask.processes)
    assert summary.totals == {"succeeded": 2}
    assert said.count(note) == 1 and started == 2


def _on_dask(session_plugin, study, tmp_path, *args: str, **env: str):
    """`mdivicom run per-session` on ses-01 with `--executor dask` and `args`."""
    return session_plugin.cli(
        *("run", "per-session", "--dataset", str(study), "--out", str(tmp_path / "out")),
        *("--sessions", "ses-01", "--executor", "dask", *args),
        **env,
    )


def test_unreachable_dask_scheduler_is_exit_2(session_plugin, study, tmp_path):
    """Refused connections are tried again for as long as the site's Dask config
    says (here set to 3 s through Dask's own variable), then a one-line error."""
    result = _on_dask(
        session_plugin,
        study,
        tmp_path,
        "--scheduler",
        f"tcp://127.0.0.1:{_free_port()}",
        DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s",
    )
    assert result.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert ": ;" not in line and "(--scheduler or MDIVICOM_DASK_SCHEDULER" in line
    assert line.endswith("tried for 3s, Dask's distributed.comm.timeouts.connect"), line


class _NotDask:
    """A loopback server that accepts connections and either says nothing (as an
    HTTP server does until it has a request line) or sends bytes that are not Dask's."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.address = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                self.accepted.append(connection)
                if self.reply:
                    connection.sendall(self.reply)

    def close(self) -> None:
        self.server.close()
        for connection in self.accepted:
            connection.close()


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.0 400 Bad request\r\n\r\n" * 4])
def test_a_port_that_does_not_speak_dask_is_exit_2(session_plugin, study, tmp_path, reply):
    """A port that accepts but is silent (a dashboard's) hung the batch for ever; one
    that answers other bytes was `internal error (MemoryError: ... 3.01 EiB ...)`."""
    server = _NotDask(reply)
    try:
        started = time.monotonic()
        result = _on_dask(
            session_plugin,
            study,
            tmp_path,
            "--scheduler",
            server.address,
            DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s",
        )
    finally:
        server.close()
    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 60
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert f"cannot reach the Dask scheduler at {server.address}: " in line, line
    assert "tcp://HOST:PORT" in line and "internal error" not in line, line
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--scheduler", "http://127.0.0.1:8787"], {}, "--scheduler 'http://127.0.0.1:8787'"),
        (["--scheduler", "tcp://127.0.0.1"], {}, "--scheduler 'tcp://127.0.0.1'"),
        ([], {"MDIVICOM_DASK_SCHEDULER": "localhost"}, "MDIVICOM_DASK_SCHEDULER 'localhost'"),
    ],
)
def test_a_scheduler_address_of_the_wrong_form_is_exit_2(
    session_plugin, study, tmp_path, args, env, named
):
    """These were `internal error (ValueError: unknown address scheme 'http')` and
    `(ValueError: missing port number ...)`, exit 1."""
    result = _on_dask(
        session_plugin,
        study,
        tmp_path,
        *args,
        **env,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {named} is not a Dask scheduler address"), line
    assert "expected tcp://HOST:PORT" in line, line


def test_a_dask_local_cluster_of_no_workers_is_exit_2(session_plugin, study, tmp_path):
    """`--executor dask --jobs 0` started a LocalCluster of no workers and waited for
    one for ever (the local and Slurm executors refuse it: exit 2)."""
    result = subprocess.run(
        [
            *(MDIVICOM, "run", "per-session", "--dataset", str(study)),
            *("--out", str(tmp_path / "o"), "--sessions", "ses-01"),
            *("--executor", "dask", "--jobs", "0"),
        ],
        env=session_plugin.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "Error: --jobs must be at least 1, got 0"
    assert not (tmp_path / "o").exists()


@pytest.mark.engines
def test_container_plugin_fanned_out_over_sessions(site, study, tmp_path, engine):
    site.manifest("count.json", count_wavs_manifest(TEST_IMAGE))
    out = tmp_path / "out"
    summary = run_batch(
        "count-wavs", dataset=study, out=out, sessions="ses-0[1-4]", jobs=2, backend=engine
    )
    assert summary.totals == {"succeeded": 4}, summary.sessions
    for index in range(1, 5):
        assert (out / f"ses-{index:02d}" / "count-wavs" / "n").read_text().strip() == "2"


def test_a_session_that_cannot_be_read_refuses_the_batch_before_any_runs(
    session_plugin, study, tmp_path
):
    """A session with an unreadable folder passed the plan: the other sessions ran, and
    it failed at run time (exit 1), though a single run refuses it (exit 2)."""
    locked = study / "sessions" / "ses-03" / "raw" / "audio"
    with unreadable(locked):
        done = cli_without_dac(
            *("run", "per-session", "--dataset", str(study), "--out", str(tmp_path / "o")),
            *("--sessions", "ses-*", "--jobs", "1"),
            env=session_plugin.env(),
            timeout=120,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the batch was not started" in done.stderr
    assert f"the dataset cannot be read: Permission denied: {str(locked)!r}" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_session_name_with_a_newline_stays_on_its_progress_line(session_plugin, tmp_path):
    """The table escaped such a name, but the progress line printed it as it is: a
    folder named `ses-02<newline>...` split its line in two (and could forge one)."""
    study = make_dataset(tmp_path / "study", sessions=2)
    (study / "sessions" / "ses-02").rename(study / "sessions" / "ses-02\nses-09 succeeded")
    result = _batch_cli(session_plugin, study, tmp_path / "out", "ses-*")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # either session may end first
    assert any(
        re.fullmatch(r"\[mdivicom\] ses-02\\nses-09 succeeded succeeded \([12]/2\)", line)
        for line in lines
    ), lines
    assert all(line.startswith("[mdivicom] ") for line in lines), lines


def test_a_session_folder_whose_name_is_not_utf8_runs_like_any_other(session_plugin, tmp_path):
    """Its worker could not send back a result holding the name (msgpack refuses
    surrogate escapes), so the session showed as `WorkerDied (exit status 0)`;
    then the summary could not be written and the batch ended as an internal
    error. Records, summaries and tables write such a name escaped (`\\xff`)."""
    study = make_dataset(tmp_path / "study", sessions=2)
    odd = os.fsdecode(os.fsencode(study / "sessions") + b"/ses-\xff02")
    (study / "sessions" / "ses-02").rename(odd)
    out = tmp_path / "out"
    result = _batch_cli(session_plugin, study, out, "ses-*", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert any(  # either session may end first
        re.fullmatch(r"\[mdivicom\] ses-\\xff02 succeeded \([12]/2\)", line)
        for line in result.stderr.splitlines()
    ), result.stderr
    assert "ses-\\xff02  succeeded  1" in result.stdout
    summary = summary_of(out)
    assert summary["totals"] == {"succeeded": 2}
    escaped = summary["sessions"][1]
    assert escaped["session"] == "ses-\\xff02" and escaped["error"] is None
    (record,) = (Path(os.fsdecode(os.fsencode(out) + b"/ses-\xff02")) / "_runs").glob("*.json")
    assert json.loads(record.read_text())["run_id"] == escaped["run_id"]
    again = _batch_cli(session_plugin, study, out, "ses-*", "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["totals"] == {"skipped": 2}


CONSENT_RULE = """
import pathlib
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_run(request):
    if not (pathlib.Path(request.dataset_dir) / "consent.json").exists():
        return ["no consent.json"]
    return []
"""


def test_the_problem_list_escapes_session_names_as_the_table_does(session_plugin, tmp_path):
    """The list of a refused batch printed each session's folder name as it is: a
    name that is not UTF-8 came out as Python's `ses-\\udcff02` (the table says
    `ses-\\xff02`), and one holding a newline split its problem over two lines."""
    study = make_dataset(tmp_path / "study", sessions=3)
    sessions = study / "sessions"
    (sessions / "ses-01" / "consent.json").write_text("{}")
    (sessions / "ses-02").rename(os.fsdecode(os.fsencode(sessions) + b"/ses-\xff02"))
    (sessions / "ses-03").rename(sessions / "ses-03\n  - ses-01")
    session_plugin.module("h_consent", CONSENT_RULE)
    session_plugin.distribution(
        "consent-rule", {"consent": "h_consent"}, group="mdivicomtools.hooks"
    )
    result = _batch_cli(session_plugin, study, tmp_path / "out", "ses-*")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "Error: the batch was not started:",
        "  - ses-03\\n  - ses-01: no consent.json (validation hook 'consent')",
        "  - ses-\\xff02: no consent.json (validation hook 'consent')",
    ]


def test_a_summary_that_cannot_be_written_is_exit_74_with_one_line(session_plugin, study, tmp_path):
    """Every session ran and recorded itself, then the summary did not fit (a full
    disk; here `ulimit -f` below the summary's size and above a record's): the batch
    ended in `internal error (OSError: [Errno 27] File too large)`, exit 1."""
    sized = tmp_path / "sized"
    assert _batch_cli(session_plugin, study, sized, "ses-*").returncode == 0
    record = max(p.stat().st_size for p in sized.glob("*/_runs/*.json"))
    summary = max(p.stat().st_size for p in (sized / "_batches").glob("*.json"))
    assert summary > record + 1024, (summary, record)  # room for longer paths below
    limit = record + 512
    out = tmp_path / "out"

    def small_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [
            MDIVICOM,
            "run",
            "per-session",
            "--sessions",
            "ses-*",
            *("--dataset", str(study)),
            *("--out", str(out)),
        ],
        env=session_plugin.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=small_files,
    )
    assert result.returncode == 74, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(
        "Error: the batch ended succeeded but its summary could not be written to "
        f"'{out / '_batches'}/"
    ), error
    assert "(File too large)" in error and f"`mdivicom runs list {out}`" in error, error
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    # no half summary either: the last whole one written while the batch ran is left
    [left] = (out / "_batches").iterdir()
    assert json.loads(left.read_text())["status"] == "running"
    [listed] = json.loads(session_plugin.cli("batches", "list", str(out), "--json").stdout)
    assert listed["status"] == "abandoned"
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("*/_runs/*.json")]
    assert statuses == ["succeeded"] * 8


def test_an_out_that_cannot_be_written_starts_no_session(session_plugin, tmp_path):
    """A batch into a path through a file (or a read-only mount) started every
    session, each failed with RecordNotWritten, and the batch ended with exit 74
    and no summary, naming one session's folder."""
    study = make_dataset(tmp_path / "study", sessions=2)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    result = _batch_cli(session_plugin, study, out, "ses-*")
    assert result.returncode == 74, result.stderr
    assert result.stderr.splitlines() == [
        f"Error: the batch was not started: cannot write into --out '{out}' "
        f"(Not a directory: {out / '_batches'}); choose a writable --out"
    ]


PIECEMEAL = """
import os, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    name = os.path.basename(dataset_dir).encode()
    for i in range(40):
        # a tool writing a line in three pieces, straight to descriptor 2
        os.write(2, name + b" line ")
        time.sleep(0.002)
        os.write(2, str(i).encode())
        time.sleep(0.002)
        os.write(2, b" end\\n")
    return {}
"""


def test_session_lines_written_in_pieces_by_several_workers_stay_whole(site, tmp_path):
    """Two local workers whose tools write each line to descriptor 2 in pieces: the
    pieces reached the batch's terminal as they came, one session's spliced into the
    other's (`ses-01 line ses-02 line 3 end`). Each session's lines now go, whole,
    into its own run log (as the rest of its output does), none onto the bar's
    terminal."""
    site.plugin("piecemeal", run_source=PIECEMEAL)
    study = make_dataset(tmp_path / "study", sessions=2)
    out = tmp_path / "out"
    args = ("--dataset", str(study), "--out", str(out), "--sessions", "ses-*", "--jobs", "2")
    result = site.cli("run", "piecemeal", *args)
    assert result.returncode == 0, result.stderr
    assert " line " not in result.stderr, result.stderr
    for session in ("ses-01", "ses-02"):
        (log,) = (out / session / "_runs").glob("*.log")
        assert log.read_text().splitlines() == [f"{session} line {i} end" for i in range(40)]
