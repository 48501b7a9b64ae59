"""Faults in how a plugin's processes end: timeouts, Ctrl-C, kill -9, hard exits.

Each test: the exit code, the record's status and error, the earlier output
intact, no staging left, and no process left (the hostile sleepers carry the
test's marker in their argv, which /proc is scanned for).
"""

from __future__ import annotations

import contextlib
import os
import pty
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import (
    assert_contained,
    assert_earlier_intact,
    assert_no_processes_left,
    assert_no_staging,
    faulty_run,
    good_earlier_run,
    hostile_plugin,
    last_record,
    marked_processes,
    read_only_mount,
    records,
    run_cli,
    start_cli,
    start_faulty,
    wait_started,
)

from pluginsite import MDIVICOM, interruptible


def test_timeout_kills_a_grandchild_that_ignores_sigterm(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "grandchild_ignores_term", dataset, out, "--timeout", "1")
    assert_contained(out, plugin, done, 124, "timed_out", "Timeout")
    assert_no_processes_left(grace=0)


def test_a_background_process_left_by_a_finished_plugin_is_stopped(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "leaves_background")
    good_earlier_run(hsite, plugin, dataset, out)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--isolate"),
    )
    assert done.returncode == 0, done.stderr
    record = last_record(out)
    assert record["status"] == "succeeded"
    assert [o["path"] for o in record["outputs"]] == ["done.txt"]
    assert_no_staging(out)
    assert_no_processes_left(grace=0)


def test_ctrl_c_stops_the_grandchildren_too(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, proc = start_faulty(hsite, "grandchild_ignores_term", dataset, out, "--isolate")
    deadline = time.monotonic() + 60
    while len(marked_processes()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    record = last_record(out)
    assert record["status"] == "interrupted"
    assert record["error"]["message"] == "interrupted by Ctrl-C (SIGINT)"
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)
    assert_no_processes_left(grace=0)


def test_kill_9_of_the_runner_leaves_an_abandoned_record_that_runs_clean_clears(
    hsite, dataset, tmp_path
):
    out = tmp_path / "out"
    plugin, proc = start_faulty(hsite, "sleeps", dataset, out, "--isolate")
    started = wait_started(out, plugin)
    child = int(started.read_text())
    proc.kill()
    proc.communicate(timeout=60)
    # the isolated child dies with its runner
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}"), "the isolated child outlived its runner"
    # the record says running; runs list shows the runner is gone
    assert last_record(out)["status"] == "running"
    listed = run_cli(hsite, "runs", "list", str(out))
    assert listed.returncode == 0
    line = next(line for line in listed.stdout.splitlines() if "abandoned" in line)
    assert last_record(out)["run_id"] in line
    # and `runs show` agrees with `runs list` (it said `running`, as the file does)
    shown = run_cli(hsite, "runs", "show", str(out), last_record(out)["run_id"])
    assert shown.returncode == 0, shown.stderr
    status = next(line for line in shown.stdout.splitlines() if line.startswith("status:"))
    assert status.split(None, 1)[1] == (
        "abandoned (recorded running; its runner is gone; `mdivicom runs clean` rewrites it)"
    )
    # config-holding staging is private to the user
    staging_run = started.parent.parent
    assert staging_run.stat().st_mode & 0o077 == 0
    cleaned = run_cli(hsite, "runs", "clean", str(out))
    assert cleaned.returncode == 0, cleaned.stderr
    assert "its runner is gone" in cleaned.stdout
    record = last_record(out)
    assert record["status"] == "abandoned" and record["error"]["type"] == "Abandoned"
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def _with_file_size_limit(limit: int):
    """preexec_fn: files may not grow past `limit` bytes (`ulimit -f`), so writing a
    record fails with EFBIG (Python ignores SIGXFSZ): a full disk, without a mount."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def test_runs_clean_does_not_claim_a_record_it_could_not_rewrite(hsite, dataset, tmp_path):
    """`runs clean` said `marked run ... abandoned` and exited 0 when the record could
    not be written (a full disk): the record still said `running`."""
    out = tmp_path / "out"
    plugin, proc = start_faulty(hsite, "sleeps", dataset, out)
    wait_started(out, plugin)
    proc.kill()
    proc.communicate(timeout=60)
    dead = last_record(out)["run_id"]
    for staging_left in (True, False):
        if not staging_left:  # the record alone: staging removed by the first clean
            assert_no_staging(out)
        cleaned = subprocess.run(
            [MDIVICOM, "runs", "clean", str(out)],
            capture_output=True,
            text=True,
            env=hsite.env(),
            timeout=90,
            check=False,
            preexec_fn=_with_file_size_limit(100),
        )
        assert cleaned.returncode == 1, cleaned.stderr
        assert "marked run" not in cleaned.stdout
        assert f"could not mark run {dead} abandoned" in cleaned.stderr
        assert "File too large" in cleaned.stderr and "Traceback" not in cleaned.stderr
        assert last_record(out)["status"] == "running"
    cleaned = run_cli(hsite, "runs", "clean", str(out))
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"marked run {dead} abandoned" in cleaned.stdout
    assert last_record(out)["status"] == "abandoned"
    assert_earlier_intact(out, plugin)


def test_runs_clean_on_a_read_only_mount_names_the_dead_run_it_cannot_clean(
    hsite, dataset, tmp_path
):
    """The lock of the dead run's plugin could not be opened for writing there, so the
    run was taken for live: `0 item(s) cleaned`, exit 0, its staging left unnamed."""
    mount = tmp_path / "mount"
    mount.mkdir()
    out = mount / "out"
    plugin, proc = start_faulty(hsite, "sleeps", dataset, out)
    wait_started(out, plugin)
    proc.kill()
    proc.communicate(timeout=60)
    dead = last_record(out)["run_id"]
    with read_only_mount(mount):
        cleaned = run_cli(hsite, "runs", "clean", str(out))
        assert cleaned.returncode == 1, cleaned.stderr
        assert f"could not mark run {dead} abandoned" in cleaned.stderr
        assert f"not all of {out / '_staging' / dead}" in cleaned.stderr
        assert "Read-only file system" in cleaned.stderr and "Traceback" not in cleaned.stderr
    cleaned = run_cli(hsite, "runs", "clean", str(out))  # writable again
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed {out / '_staging' / dead} (its runner is gone)" in cleaned.stdout
    assert last_record(out)["status"] == "abandoned"
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_the_next_run_removes_a_dead_runs_staging(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "sleeps")
    other = hostile_plugin(hsite, "deep_return")
    proc = start_cli(hsite, "run", plugin, "--dataset", str(dataset), "--out", str(out))
    wait_started(out, plugin)
    proc.kill()
    proc.communicate(timeout=60)
    # a well-behaved run of another plugin (`good`: the hostile one does nothing bad)
    done = run_cli(
        hsite, "run", other, "--dataset", str(dataset), "--out", str(out), "--set", "good=true"
    )
    assert done.returncode == 0, done.stderr
    assert "its runner is gone" in done.stderr
    assert {r["status"] for r in records(out)} == {"abandoned", "succeeded"}
    assert_no_staging(out)


def test_os_exit_in_an_isolated_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "exits_hard", dataset, out, "--isolate")
    record = assert_contained(out, plugin, done, 1, "failed", "PluginExited")
    assert record["exit_code"] == 7


def test_os_exit_in_an_in_process_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "exits_hard", dataset, out)
    assert_contained(out, plugin, done, 1, "failed", "HardExit", "os._exit(7)")


def test_a_native_crash_in_an_isolated_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "kills_itself", dataset, out, "--isolate")
    assert_contained(out, plugin, done, 1, "failed", "PluginCrashed", "SIGSEGV")


def _assert_runner_crash_recorded(out, plugin, done, signal_name):
    record = assert_contained(
        out,
        plugin,
        done,
        1,
        "failed",
        "RunnerCrashed",
        f"the runner died from {signal_name} (",
        "run with --isolate to contain it",
    )
    record_path = out / "_runs" / f"{record['run_id']}.json"
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {record['error']['message']}; the run is recorded failed: {record_path}"
    )
    return record


def test_a_native_crash_in_an_in_process_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "segfaults", dataset, out)
    record = _assert_runner_crash_recorded(out, plugin, done, "SIGSEGV")
    assert "a crash in native code" in record["error"]["message"]
    # what the plugin printed before the crash is kept, and the log ends saying why
    log = (out / record["log"]).read_text()
    assert "about to read address 0" in log and "about to read address 0" in done.stderr
    assert log.splitlines()[-1] == f"[mdivicom] {record['error']['message']}"
    assert record["finished_at"] >= record["started_at"]


def test_a_native_crash_with_json_still_prints_the_record_on_stdout(hsite, dataset, tmp_path):
    """`run --json` prints the run's record whatever the run's status; a runner that
    died from a signal printed nothing on stdout, and a script's `jq` failed on an
    empty document though the supervisor had recorded the run `failed`."""
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "segfaults", dataset, out, "--json")
    record = _assert_runner_crash_recorded(out, plugin, done, "SIGSEGV")
    import json

    assert json.loads(done.stdout) == record  # one document: the record as written


def test_a_runner_killed_by_sigkill_mid_run_is_a_recorded_failure(hsite, dataset, tmp_path):
    """What the OOM killer does to a runner whose in-process plugin ate the memory."""
    out = tmp_path / "out"
    plugin, proc = start_faulty(hsite, "sleeps", dataset, out)
    runner = int(
        wait_started(out, plugin).read_text()
    )  # in-process: the plugin's pid is the runner's
    os.kill(runner, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    record = _assert_runner_crash_recorded(out, plugin, done, "SIGKILL")
    assert record["runner"]["pid"] == runner
    assert "OOM killer" in record["error"]["message"]
    listed = run_cli(hsite, "runs", "list", str(out))
    assert "abandoned" not in listed.stdout


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_a_killed_runner_not_yet_reaped_counts_as_gone(hsite, dataset, tmp_path):
    """A runner killed with SIGKILL stays a zombie until its parent collects its exit
    status (a Dask worker until its nanny notices, while the scheduler already gives
    its session to another worker). The next run into the folder holds the plugin's
    lock itself, so only the dead runner's pid can tell it is gone: a zombie is."""
    out = tmp_path / "out"
    plugin, proc = start_faulty(hsite, "sleeps", dataset, out)
    supervisor = proc.pid  # `mdivicom run` supervises the runner it forks
    try:
        runner = int(wait_started(out, plugin).read_text())
        os.kill(supervisor, signal.SIGSTOP)  # a parent too busy to reap its child
        os.kill(runner, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _state(runner) != "Z":
            assert time.monotonic() < deadline, "the killed runner never became a zombie"
            time.sleep(0.02)
        again = run_cli(
            hsite,
            *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
            *("--overwrite", "--set", "good=true"),
        )
        assert _state(runner) == "Z"  # still unreaped while the next run looked
    finally:
        os.kill(supervisor, signal.SIGCONT)
        proc.communicate(timeout=60)
    assert again.returncode == 0, again.stderr
    killed = last_record(out)
    assert (killed["status"], killed["error"]["type"]) == ("abandoned", "Abandoned")
    assert killed["runner"]["pid"] == runner
    assert_no_staging(out)


@pytest.mark.parametrize("to", ["pid", "group"])
def test_sigint_sent_to_mdivicom_reaches_the_run_once(hsite, dataset, tmp_path, to):
    """`kill -INT PID` reaches only the supervisor, which passes it on; `kill -INT -PGID`
    (what a batch system or a harness does) reaches both, and is not passed on."""
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "counts_sigint")
    proc = subprocess.Popen(
        [MDIVICOM, "run", plugin, "--dataset", str(dataset), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hsite.env(),
        start_new_session=True,
        preexec_fn=interruptible,
    )
    wait_started(out, plugin)
    if to == "pid":
        proc.send_signal(signal.SIGINT)  # the pid the shell knows: the supervisor's
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert (out / plugin / "sigints.txt").read_text() == "1\n"


def test_ctrl_c_at_a_terminal_reaches_the_run_once(hsite, dataset, tmp_path):
    """The terminal sends SIGINT to the whole foreground group: the supervisor does not
    pass on what the runner already got."""
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "counts_sigint")
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        argv = [MDIVICOM, "run", plugin, "--dataset", str(dataset), "--out", str(out)]
        os.execve(MDIVICOM, argv, hsite.env())
    try:
        wait_started(out, plugin)
        os.write(terminal, b"\x03")  # Ctrl-C, as typed
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                os.read(terminal, 65536)  # keep the terminal drained
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "mdivicom did not end after Ctrl-C"
            time.sleep(0.05)
    finally:
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (out / plugin / "sigints.txt").read_text() == "1\n"
