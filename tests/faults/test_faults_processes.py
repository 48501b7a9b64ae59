"""Faults in how a plugin's processes end: timeouts, Ctrl-C, kill -9, hard exits.

Each test: the exit code, the record's status and error, the earlier output
intact, no staging left, and no process left (the hostile sleepers carry the
test's marker in their argv, which /proc is scanned for).
"""

from __future__ import annotations

import os
import signal
import time

from faultkit import (
    assert_earlier_intact,
    assert_no_processes_left,
    assert_no_staging,
    good_earlier_run,
    hostile_plugin,
    last_record,
    marked_processes,
    records,
    run_cli,
    start_cli,
)


def test_timeout_kills_a_grandchild_that_ignores_sigterm(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "grandchild_ignores_term")
    good_earlier_run(hsite, plugin, dataset, out)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--timeout", "1"),
    )
    assert done.returncode == 124, done.stderr
    record = last_record(out)
    assert record["status"] == "timed_out" and record["error"]["type"] == "Timeout"
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)
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
    plugin = hostile_plugin(hsite, "grandchild_ignores_term")
    good_earlier_run(hsite, plugin, dataset, out)
    proc = start_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--isolate"),
    )
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
    plugin = hostile_plugin(hsite, "sleeps")
    good_earlier_run(hsite, plugin, dataset, out)
    proc = start_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--isolate"),
    )
    started = None
    deadline = time.monotonic() + 60
    while started is None and time.monotonic() < deadline:
        started = next((out / "_staging").glob(f"*/{plugin}/started"), None)
        time.sleep(0.05)
    assert started is not None, "the plugin never started"
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


def test_the_next_run_removes_a_dead_runs_staging(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "sleeps")
    other = hostile_plugin(hsite, "deep_return")
    proc = start_cli(hsite, "run", plugin, "--dataset", str(dataset), "--out", str(out))
    deadline = time.monotonic() + 60
    while not list((out / "_staging").glob(f"*/{plugin}/started")):
        assert time.monotonic() < deadline, "the plugin never started"
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=60)
    done = run_cli(hsite, "run", other, "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "its runner is gone" in done.stderr
    assert {r["status"] for r in records(out)} == {"abandoned", "succeeded"}
    assert_no_staging(out)


def test_os_exit_in_an_isolated_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "exits_hard")
    good_earlier_run(hsite, plugin, dataset, out)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--isolate"),
    )
    assert done.returncode == 1, done.stderr
    record = last_record(out)
    assert record["status"] == "failed" and record["error"]["type"] == "PluginExited"
    assert record["exit_code"] == 7
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_os_exit_in_an_in_process_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "exits_hard")
    good_earlier_run(hsite, plugin, dataset, out)
    done = run_cli(
        hsite, "run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"
    )
    assert done.returncode == 1, done.stderr
    record = last_record(out)
    assert record["status"] == "failed" and record["error"]["type"] == "HardExit"
    assert "os._exit(7)" in record["error"]["message"]
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_a_native_crash_in_an_isolated_plugin_is_a_recorded_failure(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "kills_itself")
    good_earlier_run(hsite, plugin, dataset, out)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--isolate"),
    )
    assert done.returncode == 1, done.stderr
    record = last_record(out)
    assert record["status"] == "failed" and record["error"]["type"] == "PluginCrashed"
    assert "SIGSEGV" in record["error"]["message"]
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)
