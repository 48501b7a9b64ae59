"""Faults in batches: Ctrl-C on a Dask batch, kill -9 of a local batch, ignored SIGINT.

A terminal's Ctrl-C reaches every process of the foreground group, so these
tests start `mdivicom` in a session of its own and signal the whole group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import assert_no_processes_left, assert_no_staging, hostile_plugin, run_cli

from mdivicomtools.authoring.sampledata import make_sample_dataset
from pluginsite import MDIVICOM


def _start_batch(site, plugin, study, out, *extra, ignore_sigint=False, capture=True):
    def session_leader() -> None:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.SIG_DFL)

    return subprocess.Popen(
        [MDIVICOM, "run", plugin, "--dataset", str(study), "--out", str(out), *extra],
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
        env=site.env(),
        preexec_fn=session_leader,
    )


def _wait_started(out, plugin, count, timeout=90):
    deadline = time.monotonic() + timeout
    while len(list(out.glob(f"*/_staging/*/{plugin}/started"))) < count:
        assert time.monotonic() < deadline, "the sessions never started"
        time.sleep(0.05)


def _disposition(pid, signum):
    """How process `pid` treats `signum`: ignored, caught or default (/proc/PID/status)."""
    fields = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":\t" in line
    )
    bit = 1 << (signum - 1)
    if int(fields["SigIgn"], 16) & bit:
        return "ignored"
    return "caught" if int(fields["SigCgt"], 16) & bit else "default"


def _records(out):
    return {
        p.parent.parent.name: json.loads(p.read_text())["status"]
        for p in out.glob("*/_runs/*.json")
    }


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGHUP, signal.SIGQUIT], ids=["ctrl-c", "hang-up", "quit"]
)
def test_ctrl_c_on_a_dask_batch_lets_running_sessions_finish(hsite, tmp_path, sig):
    """The terminal's Ctrl-C, its Ctrl-\\ (SIGQUIT), or its SIGHUP when it closes,
    reaches every process of the group. SIGHUP and SIGQUIT killed the LocalCluster's
    workers mid-session (their sessions lost) and multiprocessing's resource
    tracker, whose successor printed tracebacks."""
    pytest.importorskip("distributed")
    study = make_sample_dataset(tmp_path / "study", sessions=4)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "naps")
    proc = _start_batch(
        hsite, plugin, study, out, "--sessions", "ses-*", "--executor", "dask", "--jobs", "2"
    )
    _wait_started(out, plugin, 2)
    os.killpg(proc.pid, sig)  # what the terminal does on Ctrl-C, or when it closes
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    (summary_path,) = (out / "_batches").glob("*.json")
    summary = json.loads(summary_path.read_text())
    statuses = {s["session"]: s["status"] for s in summary["sessions"]}
    # the two running sessions finished and say so; the others never started
    assert sorted(statuses.values()) == ["not_started", "not_started", "succeeded", "succeeded"]
    records = _records(out)
    assert sorted(records.values()) == ["succeeded", "succeeded"]
    assert {s for s, v in statuses.items() if v == "succeeded"} == set(records)
    for session in records:
        assert (out / session / plugin / "done.txt").exists()
        assert_no_staging(out / session)
    assert_no_processes_left(str(out))


def test_kill_9_of_a_local_batch_stops_its_workers_and_records_their_runs(hsite, tmp_path):
    study = make_sample_dataset(tmp_path / "study", sessions=3)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "sleeps")
    proc = _start_batch(hsite, plugin, study, out, "--sessions", "ses-*", "--jobs", "2")
    _wait_started(out, plugin, 2)
    proc.kill()
    proc.communicate(timeout=60)
    assert_no_processes_left(str(out), grace=10)
    records = _records(out)
    assert sorted(records.values()) == ["interrupted", "interrupted"]
    for session in records:
        assert_no_staging(out / session)


def test_kill_9_of_a_local_batch_prints_no_traceback_from_its_workers(hsite, tmp_path):
    """A worker forked from the batch inherited the supervisor's signal wakeup pipe: the
    SIGTERM that stops it after `kill -9` of `mdivicom` was reported into that pipe,
    whose reader was gone, and Python printed a traceback for each worker (into its
    run's log while the plugin ran in-process, on stderr while a backend cleaned up)."""
    study = make_sample_dataset(tmp_path / "study", sessions=2)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "slow_to_stop")
    proc = _start_batch(hsite, plugin, study, out, "--sessions", "ses-*", "--jobs", "2")
    _wait_started(out, plugin, 2)
    proc.kill()
    _, stderr = proc.communicate(timeout=60)  # until the workers, which share it, are gone
    assert_no_processes_left(str(out), grace=10)
    assert sorted(_records(out).values()) == ["interrupted", "interrupted"]
    logs = [path.read_text() for path in out.glob("*/_runs/*.log")]
    assert len(logs) == 2
    for text in [stderr, *logs]:
        assert "Exception ignored" not in text and "Traceback" not in text, text


def test_a_batch_started_with_sigint_ignored_keeps_it_ignored_in_its_workers(hsite, tmp_path):
    study = make_sample_dataset(tmp_path / "study", sessions=2)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "naps")
    proc = _start_batch(
        hsite, plugin, study, out, "--sessions", "ses-*", "--jobs", "2", ignore_sigint=True
    )
    _wait_started(out, plugin, 2)
    # each session runs in its worker's process: the worker still ignores SIGINT
    for started in out.glob(f"*/_staging/*/{plugin}/started"):
        assert _disposition(int(started.read_text()), signal.SIGINT) == "ignored"
    os.killpg(proc.pid, signal.SIGINT)  # ignored, as nohup or a background job would
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr
    assert sorted(_records(out).values()) == ["succeeded", "succeeded"]
    assert_no_processes_left(str(out))


def test_resume_runs_a_session_again_whose_output_was_deleted(hsite, tmp_path):
    study = make_sample_dataset(tmp_path / "study", sessions=2)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "leaves_background")  # with good=true: writes result.txt
    args = ("run", plugin, "--dataset", str(study), "--out", str(out), "--sessions", "ses-*")
    first = run_cli(hsite, *args, "--set", "good=true")
    assert first.returncode == 0, first.stderr
    shutil.rmtree(out / "ses-01" / plugin)
    again = run_cli(hsite, *args, "--set", "good=true", "--resume", "--json")
    assert again.returncode == 0, again.stderr
    statuses = {s["session"]: s["status"] for s in json.loads(again.stdout)["sessions"]}
    assert statuses == {"ses-01": "succeeded", "ses-02": "skipped"}
    assert (out / "ses-01" / plugin / "result.txt").read_text() == "good\n"
    assert_no_staging(out / "ses-01")


def test_ctrl_c_on_a_terminal_interrupts_a_local_batch_cleanly(hsite, tmp_path):
    study = make_sample_dataset(tmp_path / "study", sessions=3)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "sleeps")
    proc = _start_batch(hsite, plugin, study, out, "--sessions", "ses-*", "--jobs", "2")
    _wait_started(out, plugin, 2)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches every worker too
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    (summary_path,) = (out / "_batches").glob("*.json")
    statuses = sorted(s["status"] for s in json.loads(summary_path.read_text())["sessions"])
    assert statuses == ["interrupted", "interrupted", "not_started"]
    assert sorted(_records(out).values()) == ["interrupted", "interrupted"]
    for session in _records(out):
        assert_no_staging(out / session)
    assert_no_processes_left(str(out))


def test_kill_9_of_a_dask_batch_leaves_no_worker_and_abandoned_runs(hsite, tmp_path):
    pytest.importorskip("distributed")
    study = make_sample_dataset(tmp_path / "study", sessions=3)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "sleeps")
    proc = _start_batch(
        hsite,
        *(plugin, study, out, "--sessions", "ses-*", "--executor", "dask", "--jobs", "2"),
        capture=False,  # the killed batch's output is not what this test is about
    )
    _wait_started(out, plugin, 2)
    proc.kill()
    proc.wait(timeout=60)
    assert_no_processes_left(str(out), grace=15)
    listed = run_cli(hsite, "runs", "list", str(out), "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["status"] for row in json.loads(listed.stdout)) == ["abandoned"] * 2
    cleaned = run_cli(hsite, "runs", "clean", str(out), timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.count("its runner is gone") == 2
    assert sorted(_records(out).values()) == ["abandoned", "abandoned"]
    for session in _records(out):
        assert_no_staging(out / session)


def test_a_native_crash_in_a_local_batch_costs_only_its_session(hsite, tmp_path):
    """Each session of a local batch runs in a worker process: a segfault there ends
    that worker, and the batch records the session and goes on."""
    study = make_sample_dataset(tmp_path / "study", sessions=2)
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "segfaults")
    args = ("run", plugin, "--dataset", str(study), "--out", str(out), "--sessions", "ses-*")
    done = run_cli(hsite, *args, "--jobs", "2", "--json")
    assert done.returncode == 1, done.stderr
    sessions = json.loads(done.stdout)["sessions"]
    assert [s["status"] for s in sessions] == ["failed", "failed"]
    for session in sessions:
        assert "SIGSEGV" in session["error"], session
    # every run has a final record, none is left `running`
    assert sorted(_records(out).values()) == ["failed", "failed"]
    for session in ("ses-01", "ses-02"):
        assert_no_staging(out / session)
