"""Helpers of the fault-injection suite: hostile plugins, runs and the leak checks.

Every fault test asserts, besides the exit code and the record: the earlier
output intact, no `_staging` left, and no process (scanned in /proc by a marker
in its argv) or container (by label, on the real engines) left behind.

Every fault test must fail on the version before the fix. The tests drive the
`mdivicom` command, so they run against another version's command as they are:

    git worktree add --detach ../old 6bd6dc0   # 0.1, with its own venv
    MDIVICOM_TEST_COMMAND=../old/.venv/bin/mdivicom pytest tests/faults

(the private-service test runs that version's interpreter too). A test that
passes there proves nothing about its fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pluginsite import MDIVICOM, PluginSite, interruptible, plugin_dict

HOSTILE = Path(__file__).parent / "hostile"
MARK_ENV = "HOSTILE_MARK"


def hostile_plugin(site: PluginSite, function: str, plugin_id: str | None = None) -> str:
    """Register `hostile:<function>` as the python plugin `plugin_id` (default: its name)."""
    plugin_id = plugin_id or function.replace("_", "-")
    data = plugin_dict(plugin_id)
    data["entry"] = {"callable": f"hostile:{function}"}
    site.plugin(plugin_id, data=data)
    return plugin_id


@contextlib.contextmanager
def small_file_system(path: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` (made) for the block."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[Path]:
    """`path` (a folder) bind-mounted read-only over itself for the block."""
    for command in (
        ["mount", "--bind", str(path), str(path)],
        ["mount", "-o", "remount,bind,ro", str(path)],
    ):
        mounted = subprocess.run(command, capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)
            pytest.skip(f"cannot mount {path} read-only here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def run_cli(site: PluginSite, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`mdivicom ARGS`; a run that hangs fails the test at `timeout` instead of blocking CI."""
    return subprocess.run(
        [MDIVICOM, *args],
        capture_output=True,
        text=True,
        env=site.env(),
        timeout=timeout,
        check=False,
    )


def start_cli(site: PluginSite, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MDIVICOM, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=site.env(),
        preexec_fn=interruptible,
    )


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "_runs").glob("*.json"))]


def last_record(out: Path) -> dict:
    """The record of the faulty run: the one that was not the good earlier run."""
    found = [r for r in records(out) if r["config"].get("good") is not True]
    assert len(found) == 1, f"expected one record of the faulty run under {out}/_runs: {found}"
    return found[0]


def marked_processes(mark: str | None = None) -> list[int]:
    """Pids whose command line carries the test's marker (the hostile plugins' sleepers)."""
    mark = mark or os.environ[MARK_ENV]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            # a process whose main thread exited shows Z while other threads run on
            states = [
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                for task in (entry / "task").iterdir()
            ]
        except OSError:
            continue
        if mark.encode() in cmdline and any(state != "Z" for state in states):
            found.append(int(entry.name))
    return found


def processes_with_cwd_or_arg(text: str) -> list[int]:
    """Pids whose command line mentions `text` (a run's out folder, say)."""
    return marked_processes(text)


def assert_no_processes_left(mark: str | None = None, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # do not let a failing test leak into the next one
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}"


def assert_no_staging(out: Path) -> None:
    staging = out / "_staging"
    assert not staging.exists() or not any(staging.iterdir()), list(staging.rglob("*"))


def good_earlier_run(
    site: PluginSite, plugin_id: str, dataset: Path, out: Path, *extra: str
) -> None:
    """The plugin's well-behaved run (config `good`), whose output the fault must keep."""
    done = run_cli(
        site,
        *("run", plugin_id, "--dataset", str(dataset), "--out", str(out)),
        *("--set", "good=true", *extra),
    )
    assert done.returncode == 0, done.stderr
    assert (out / plugin_id / "result.txt").read_text() == "good\n"


def assert_earlier_intact(out: Path, plugin_id: str) -> None:
    assert sorted(p.name for p in (out / plugin_id).iterdir()) == ["result.txt"]
    assert (out / plugin_id / "result.txt").read_text() == "good\n"


def faulty_run(
    site: PluginSite, function: str, dataset: Path, out: Path, *extra: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`hostile:<function>`'s good run into `out`, then its faulty run with --overwrite
    and `extra`; returns the plugin id and the faulty run."""
    plugin = hostile_plugin(site, function)
    good_earlier_run(site, plugin, dataset, out)
    done = run_cli(
        site, "run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite", *extra
    )
    return plugin, done


def assert_contained(
    out: Path,
    plugin: str,
    done: subprocess.CompletedProcess[str],
    code: int,
    status: str,
    error_type: str,
    *named: str,
) -> dict:
    """The faulty run exited `code` with a record of `status` and `error_type` whose message
    names each of `named`; the earlier output is intact and no staging is left."""
    assert done.returncode == code, done.stderr
    record = last_record(out)
    assert record["status"] == status, record
    assert record["error"]["type"] == error_type, record["error"]
    for text in named:
        assert text in record["error"]["message"], record["error"]["message"]
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)
    return record


def start_faulty(
    site: PluginSite, function: str, dataset: Path, out: Path, *extra: str
) -> tuple[str, subprocess.Popen[str]]:
    """Like faulty_run, but the faulty run is started and left running for the test."""
    plugin = hostile_plugin(site, function)
    good_earlier_run(site, plugin, dataset, out)
    proc = start_cli(
        site, "run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite", *extra
    )
    return plugin, proc


def wait_started(out: Path, plugin: str, timeout: float = 60) -> Path:
    """The `started` file a hostile plugin writes into its staging folder (it holds the
    pid of the process the plugin runs in)."""
    deadline = time.monotonic() + timeout
    while (started := next((out / "_staging").glob(f"*/{plugin}/started"), None)) is None:
        assert time.monotonic() < deadline, "the plugin never started"
        time.sleep(0.05)
    return started
