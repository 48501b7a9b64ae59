"""`mdivicom run` and `mdivicom runs` through the real console script."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pluginsite import MDIVICOM, interruptible, wait_for

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "out.txt").write_text(config.get("text", "v1"))
    return {"status": "ok"}
"""


def slow_plugin(started, seconds=60):
    return f"""
import pathlib, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "partial.txt").write_text("half")
    pathlib.Path({str(started)!r}).write_text("started")
    time.sleep({seconds})
    pathlib.Path(out_dir, "out.txt").write_text("late")
"""


def records(out):
    """Every record under out, oldest first."""
    found = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    return sorted(found, key=lambda r: (r["started_at"], r["run_id"]))


def test_an_out_that_cannot_be_written_is_exit_74_with_one_line(site, dataset, tmp_path):
    """The per-plugin lock beside the records is the first thing written: where it
    cannot be made (here a path through a file; a read-only mount alike), nothing
    starts, and the error names the folder and the cause instead of `internal error`."""
    site.plugin("writer", run_source=WRITE)
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "sub"
    result = site.cli("run", "writer", "--dataset", str(dataset), "--out", str(out))
    assert result.returncode == 74, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith(
        f"Error: the run was not started: cannot write into --out '{out}' (Not a directory: "
    ), error
    assert error.endswith("choose a writable --out"), error
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


MANY = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for n in range(40):
        pathlib.Path(out_dir, f"part-{n:02d}.txt").write_text("new")
"""


def test_a_final_record_that_cannot_be_written_is_exit_74_and_keeps_the_output(
    site, dataset, tmp_path
):
    """The first record fits, the final one (40 outputs listed) does not: `ulimit -f`
    makes the write fail (EFBIG) as a full disk or a `_runs/` remounted read-only
    would. The line said `free space` whatever the cause."""
    site.plugin("many", run_source=WRITE)
    out = tmp_path / "out"
    assert site.cli("run", "many", "--dataset", str(dataset), "--out", str(out)).returncode == 0
    site.module("p_many_d.run", MANY)

    def small_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    result = subprocess.run(
        [MDIVICOM, "run", "many", "--dataset", str(dataset), "--out", str(out), "--overwrite"],
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        preexec_fn=small_files,
    )
    assert result.returncode == 74, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: the run ended succeeded but its record could not be written")
    assert "(File too large)" in error and "was left as it was before the run" in error
    assert error.endswith(
        "free space or make the folder writable (a read-only mount, its permissions), and "
        "see `mdivicom runs list`"
    )
    assert (out / "many" / "out.txt").read_text() == "v1"
    assert not (out / "many" / "part-00.txt").exists()
    listed = site.cli("runs", "list", str(out))
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == [
        "succeeded",
        "abandoned",
    ]


def test_run_success_human_output_and_exit_0(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    result = site.cli("run", "writer", "--dataset", str(dataset), "--out", str(out))
    assert result.returncode == 0, result.stderr
    (record,) = records(out)
    assert result.stdout.splitlines() == [
        f"succeeded:  lab/writer 1.0.0 in {record['duration_s']:.2f} s",
        f"outputs:    {out}/writer/ (1 file(s))",
        f"record:     {out}/_runs/{record['run_id']}.json",
        f"log:        {out}/_runs/{record['run_id']}.log",
    ]
    phases = [line.split(":")[0] for line in result.stderr.splitlines()]
    assert phases == [
        "[mdivicom] resolve",
        "[mdivicom] validate",
        "[mdivicom] run",
        "[mdivicom] finalise",
        "[mdivicom] record",
    ]


def test_run_json_prints_only_the_record(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    result = site.cli(
        "run",
        "lab/writer",
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--config",
        '{"text": "v2", "password": "pw"}',
        "--json",
    )
    assert result.returncode == 0
    record = json.loads(result.stdout)
    assert record == records(out)[0]
    assert record["config"] == {"text": "v2", "password": "***REDACTED***"}


@pytest.mark.parametrize("isolate", [[], ["--isolate"]])
def test_a_subprocess_output_is_logged_not_on_stdout(site, dataset, tmp_path, isolate):
    """A python plugin that runs a command-line tool: the tool's stdout went straight
    to mdivicom's stdout in-process (in the middle of `--json`) and missed the log."""
    site.plugin(
        "shell-out",
        run_source=(
            "import os, subprocess, sys\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    subprocess.run(['echo', 'tool version 6.1'], check=True)\n"
            "    os.write(1, b'raw descriptor 1\\n')\n"
            "    print('from print')\n"
            "    return {'ok': True}\n"
        ),
    )
    out = tmp_path / "out"
    args = ["run", "shell-out", "--dataset", str(dataset), "--out", str(out), "--json"]
    result = site.cli(*args, *isolate)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
    log = next((out / "_runs").glob("*.log")).read_text()
    # in-process, descriptor 1 reaches the log through a pipe, print() directly: the
    # order between the two is not kept
    assert sorted(log.splitlines()) == ["from print", "raw descriptor 1", "tool version 6.1"]
    assert "tool version 6.1" in result.stderr  # shown live, as the plugin's output is


@pytest.mark.parametrize("isolate", [[], ["--isolate"]])
def test_escape_sequences_in_a_plugins_output_do_not_reach_the_terminal(
    site, dataset, tmp_path, isolate
):
    """The live echo passed a plugin's output to the terminal as printed: an OSC
    sequence set the window title or wrote the clipboard (`ESC ]52;`), `ESC [2J`
    cleared the screen. They are written out there now; the log keeps the bytes,
    and newlines, tabs and a progress bar's carriage returns still lay it out."""
    site.plugin(
        "noisy",
        run_source=(
            "import os, subprocess, sys\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    print('title \\x1b]0;PWNED\\x07 clear \\x1b[2J bell \\x07 \\u202etxt.exe')\n"
            "    sys.stdout.write('\\r10%\\r100%\\tdone\\n')\n"
            "    os.write(1, b'clipboard \\x1b]52;c;SGVsbG8=\\x07 \\xff nul \\x00\\n')\n"
            "    os.write(2, b'fd 2 \\x1b]0;OWNED\\x07\\n')\n"
            "    subprocess.run(['sh', '-c', 'printf \"tool \\\\033[2J on stderr\\\\n\" >&2'])\n"
            "    return {'ok': True}\n"
        ),
    )
    out = tmp_path / "out"
    args = ["run", "noisy", "--dataset", str(dataset), "--out", str(out), *isolate]
    result = site.cli(*args)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\x00" not in result.stderr and "\u202e" not in result.stderr
    shown = result.stderr.split("\n")  # splitlines() would split at the \r too
    assert r"title \x1b]0;PWNED\x07 clear \x1b[2J bell \x07 \u202etxt.exe" in shown
    assert r"clipboard \x1b]52;c;SGVsbG8=\x07 " + "\ufffd" + r" nul \x00" in shown
    # kept as control characters (text mode reads each \r as a line end), not written out
    assert "\n10%\n100%\tdone\n" in result.stderr and r"\r" not in result.stderr
    log = next((out / "_runs").glob("*.log")).read_bytes()
    assert b"title \x1b]0;PWNED\x07 clear \x1b[2J bell \x07 \xe2\x80\xaetxt.exe\n" in log
    assert b"clipboard \x1b]52;c;SGVsbG8=\x07 \xff nul \x00\n" in log
    assert b"\r10%\r100%\tdone\n" in log
    # C code or a tool writing to descriptor 2 itself reached the terminal unfiltered,
    # and not the log, when the plugin ran in-process
    assert r"fd 2 \x1b]0;OWNED\x07" in shown and r"tool \x1b[2J on stderr" in shown
    assert b"fd 2 \x1b]0;OWNED\x07\n" in log and b"tool \x1b[2J on stderr\n" in log


def test_an_in_process_plugin_can_write_bytes_to_sys_stdout_buffer(site, dataset, tmp_path):
    """`sys.stdout.buffer.write(...)` raised AttributeError in-process (the run
    failed) while it worked with --isolate: the log's stream had no buffer."""
    site.plugin(
        "binary",
        run_source=(
            "import sys\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    sys.stdout.buffer.write(b'raw \\xff bytes\\n')\n"
            "    sys.stdout.buffer.flush()\n"
            "    sys.stderr.buffer.write(b'to stderr\\n')\n"
            "    return {'ok': True}\n"
        ),
    )
    out = tmp_path / "out"
    result = site.cli("run", "binary", "--dataset", str(dataset), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "succeeded"
    log = next((out / "_runs").glob("*.log")).read_bytes()
    assert sorted(log.splitlines()) == [b"raw \xff bytes", b"to stderr"]


def test_plugin_failure_exit_1_and_summary(site, dataset, tmp_path):
    site.plugin("boom", run_source="def run(*a, **k):\n    raise RuntimeError('kaput')\n")
    out = tmp_path / "out"
    result = site.cli("run", "boom", "--dataset", str(dataset), "--out", str(out))
    assert result.returncode == 1
    summary = {k: v.strip() for k, v in (ln.split(":", 1) for ln in result.stdout.splitlines())}
    (record,) = records(out)
    assert summary["failed"] == f"lab/boom 1.0.0 in {record['duration_s']:.2f} s"
    assert summary["error"] == "RuntimeError: kaput"
    assert summary["outputs"] == f"{out}/boom/ was not changed"
    # the plugin's traceback is in the run log; the terminal gets it only with -v
    assert "Traceback" not in result.stderr
    assert "Traceback" in (out / "_runs" / f"{record['run_id']}.log").read_text()
    assert record["status"] == "failed"


def test_validation_errors_exit_2_all_at_once(site, tmp_path):
    site.plugin("strict", config_schema={"type": "object", "required": ["ref"]})
    result = site.cli(
        "run",
        "strict",
        "--dataset",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "out"),
        "--set",
        "x=1",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-3:] == [
        "Error: the run was not started:",
        f"  - --dataset '{tmp_path / 'missing'}' does not exist; give an existing dataset folder",
        "  - config: 'ref' is a required property",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{oops"], "Error: --config: not valid JSON"),
        (["--set", "novalue"], "Error: --set 'novalue': expected KEY=VALUE"),
        (
            ["--timeout", "-1"],
            "Error: --timeout must be a positive, finite number of seconds, got -1",
        ),
        # click's float parses these; a NaN timeout stopped a python plugin at once
        (
            ["--timeout", "nan"],
            "Error: --timeout must be a positive, finite number of seconds, got nan",
        ),
        (
            ["--timeout", "inf"],
            "Error: --timeout must be a positive, finite number of seconds, got inf",
        ),
        (
            ["--backend", "nope"],
            "Error: backend 'nope' is not installed; installed backends: ",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(site, dataset, tmp_path, args, message):
    site.plugin("writer", run_source=WRITE)
    result = site.cli(
        "run", "writer", "--dataset", str(dataset), "--out", str(tmp_path / "o"), *args
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_timeout_exit_124(site, dataset, tmp_path):
    site.plugin("sleepy", run_source=slow_plugin(tmp_path / "started"))
    out = tmp_path / "out"
    result = site.cli(
        "run", "sleepy", "--dataset", str(dataset), "--out", str(out), "--timeout", "1"
    )
    assert result.returncode == 124
    (record,) = records(out)
    assert record["status"] == "timed_out"
    assert not (out / "sleepy").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
@pytest.mark.parametrize("isolate", [False, True])
def test_interrupt_mid_run_records_and_keeps_earlier_output(site, dataset, tmp_path, sig, isolate):
    started = tmp_path / "started"
    site.plugin("slow", run_source=WRITE)
    out = tmp_path / "out"
    assert site.cli("run", "slow", "--dataset", str(dataset), "--out", str(out)).returncode == 0
    site.module("p_slow_d.run", slow_plugin(started))
    args = [MDIVICOM, "run", "slow", "--dataset", str(dataset), "--out", str(out), "--overwrite"]
    proc = subprocess.Popen(
        [*args, *(["--isolate"] if isolate else [])],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    wait_for(started, timeout=30)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    newest = records(out)[-1]
    assert newest["status"] == "interrupted"
    # SIGHUP: the terminal was closed; it killed the runner outright, which the
    # supervisor then recorded with no clean-up of the runner's own (a container ran on)
    expected = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else sig.name
    assert newest["error"] == {"type": "Interrupted", "message": f"interrupted by {expected}"}
    assert "interrupted:" in stdout
    # the line every command ends with on a signal (docs/reference/exit-codes.md)
    assert stderr.strip().splitlines()[-1] == f"Error: interrupted by {expected}", stderr
    assert (out / "slow" / "out.txt").read_text() == "v1"  # the earlier output, untouched
    assert not (out / "slow" / "partial.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["_runs", "slow"]  # staging cleaned


def test_closing_the_terminal_records_the_run_interrupted(site, dataset, tmp_path):
    """The terminal a run was started from is closed (an ssh session lost, a window
    shut): the kernel sends SIGHUP, which killed the runner outright (its container
    ran on; `before the runner could record the run`). It stops the run as SIGTERM
    does now."""
    started = tmp_path / "started"
    site.plugin("slow", run_source=WRITE)
    out = tmp_path / "out"
    assert site.cli("run", "slow", "--dataset", str(dataset), "--out", str(out)).returncode == 0
    site.module("p_slow_d.run", slow_plugin(started))
    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs at once
        argv = [MDIVICOM, "run", "slow", "--dataset", str(dataset), "--out", str(out)]
        os.execve(MDIVICOM, [*argv, "--overwrite"], site.env())
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            with contextlib.suppress(OSError):
                os.read(terminal, 65536)  # keep the terminal drained
            assert time.monotonic() < deadline, "the plugin never started"
            time.sleep(0.05)
    finally:
        os.close(terminal)  # the terminal goes away: SIGHUP
    _, status = os.waitpid(pid, 0)
    # 130, not `internal error` (1): the lines after the record find no terminal
    assert os.waitstatus_to_exitcode(status) == 130
    newest = records(out)[-1]
    assert newest["status"] == "interrupted"
    assert newest["error"] == {"type": "Interrupted", "message": "interrupted by SIGHUP"}
    assert (out / "slow" / "out.txt").read_text() == "v1"
    assert sorted(p.name for p in out.iterdir()) == ["_runs", "slow"]


def test_a_run_started_with_sighup_ignored_outlives_its_terminal(site, dataset, tmp_path):
    """`nohup mdivicom run ...`: SIGHUP stays ignored, and the run goes on."""
    started = tmp_path / "started"
    site.plugin("slow", run_source=slow_plugin(started, seconds=2))
    out = tmp_path / "out"

    def nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(
        [MDIVICOM, "run", "slow", "--dataset", str(dataset), "--out", str(out)],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=nohup,
    )
    wait_for(started, timeout=30)
    os.killpg(proc.pid, signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert records(out)[-1]["status"] == "succeeded"
    assert (out / "slow" / "out.txt").read_text() == "late"


@pytest.mark.parametrize("how", ["moved", "deleted"])
def test_an_out_moved_or_deleted_mid_run_is_not_made_again(site, dataset, tmp_path, how):
    """The operator moves (or deletes) the run root while a run is in it: the run made
    a new, lone `<out>/_runs/` for its final record, which blamed the inventory (`the
    output could not be listed`) and said the output `was not changed` where there
    was none; the first record, gone with the folder, stayed `running`."""
    started = tmp_path / "started"
    site.plugin("slow", run_source=WRITE)
    out = tmp_path / "out"
    assert site.cli("run", "slow", "--dataset", str(dataset), "--out", str(out)).returncode == 0
    site.module("p_slow_d.run", slow_plugin(started, seconds=2))
    proc = subprocess.Popen(
        [MDIVICOM, "run", "slow", "--dataset", str(dataset), "--out", str(out), "--overwrite"],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(started, timeout=30)
    moved = tmp_path / "moved"
    if how == "moved":
        out.rename(moved)
    else:
        shutil.rmtree(out)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 74, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the run ended failed but its record could not be written: ")
    assert f"{str(out / '_runs')!r} was moved or deleted while the run ran" in last
    assert "Traceback" not in stderr
    assert not out.exists()  # nothing made again where the operator took the folder away
    if how == "moved":
        assert (moved / "slow" / "out.txt").read_text() == "v1"  # the earlier output
        listed = site.cli("runs", "list", str(moved))
        assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == [
            "succeeded",
            "abandoned",
        ]


def test_a_plugin_that_removes_its_output_folder_fails_naming_it(site, dataset, tmp_path):
    site.plugin(
        "remover",
        run_source="""
import shutil
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    shutil.rmtree(out_dir)
""",
    )
    out = tmp_path / "out"
    done = site.cli("run", "remover", "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 1, done.stderr
    (record,) = records(out)
    assert record["error"]["type"] == "StagingLost"
    assert record["error"]["message"].startswith(
        f"the run's output folder {str(out / '_staging' / record['run_id'] / 'remover')!r} is "
        "gone: the plugin removed it, or --out"
    )
    assert record["hook_errors"] == []
    assert sorted(p.name for p in out.iterdir()) == ["_runs"]


def test_same_plugin_twice_at_once_is_refused(site, dataset, tmp_path):
    started = tmp_path / "started"
    site.plugin("slow", run_source=slow_plugin(started, seconds=3))
    out = tmp_path / "out"
    first = subprocess.Popen(
        [MDIVICOM, "run", "slow", "--dataset", str(dataset), "--out", str(out)],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(started, timeout=30)
    second = site.cli("run", "slow", "--dataset", str(dataset), "--out", str(out))
    assert second.returncode == 2
    assert second.stderr.splitlines()[-1] == (
        f"Error: another run of 'slow' is writing into '{out}' right now; wait for it to "
        "finish or choose another --out"
    )
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert [r["status"] for r in records(out)] == ["succeeded"]


def test_different_plugins_into_the_same_out_at_once_both_succeed(site, dataset, tmp_path):
    site.plugin("one", run_source=slow_plugin(tmp_path / "one-started", seconds=2))
    site.plugin("two", run_source=slow_plugin(tmp_path / "two-started", seconds=2))
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [MDIVICOM, "run", name, "--dataset", str(dataset), "--out", str(out)],
            env=site.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    assert sorted(r["plugin"]["id"] for r in records(out)) == ["one", "two"]
    assert (out / "one" / "out.txt").exists() and (out / "two" / "out.txt").exists()


def test_runs_list_and_show(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    site.plugin("boom", run_source="def run(*a, **k):\n    raise RuntimeError('kaput')\n")
    out = tmp_path / "out"
    site.cli("run", "writer", "--dataset", str(dataset), "--out", str(out))
    site.cli("run", "boom", "--dataset", str(dataset), "--out", str(out))
    listing = site.cli("runs", "list", str(out))
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["RUN_ID", "STATUS", "PLUGIN", "VERSION", "DURATION", "ERROR"]
    assert "succeeded" in lines[1] and "lab/writer" in lines[1]
    assert "failed" in lines[2] and "RuntimeError: kaput" in lines[2]
    items = json.loads(site.cli("runs", "list", str(out), "--json").stdout)
    assert [(i["plugin"], i["status"]) for i in items] == [
        ("lab/writer", "succeeded"),
        ("lab/boom", "failed"),
    ]
    latest = json.loads(site.cli("runs", "show", str(out), "latest", "--json").stdout)
    assert latest["run_id"] == items[1]["run_id"] and latest["status"] == "failed"
    shown = site.cli("runs", "show", str(out), items[0]["run_id"])
    assert "run_id:" in shown.stdout and items[0]["run_id"] in shown.stdout
    missing = site.cli("runs", "show", str(out), "20990101T000000Z_deadbeef")
    assert missing.returncode == 2
    assert "no run '20990101T000000Z_deadbeef'" in missing.stderr and "latest" in missing.stderr


def test_runs_list_of_an_empty_folder(tmp_path):
    result = subprocess.run(
        [MDIVICOM, "runs", "list", str(tmp_path), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0 and json.loads(result.stdout) == []
    result = subprocess.run(
        [MDIVICOM, "runs", "show", str(tmp_path), "latest"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "no run records in" in result.stderr


def test_runs_list_reports_unreadable_records(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    site.cli("run", "writer", "--dataset", str(dataset), "--out", str(out))
    (out / "_runs" / "garbage.json").write_text("{not json")
    result = site.cli("runs", "list", str(out), "--json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 1
    assert "garbage.json: not a readable run record" in result.stderr


def _hanging_discovery(site, tmp_path) -> None:
    """A get_plugin() that never returns: a signal lands during discovery, before any run."""
    site.module("p_hang.__init__", "")
    site.module(
        "p_hang.plugin",
        f"""
import pathlib, time
def get_plugin():
    pathlib.Path({str(tmp_path / "hanging")!r}).write_text("x")
    time.sleep(60)
""",
    )
    site.distribution("hang-dist", {"hang": "p_hang.plugin:get_plugin"})


def test_keyboard_interrupt_before_a_run_exits_130_without_traceback(site, dataset, tmp_path):
    _hanging_discovery(site, tmp_path)
    proc = subprocess.Popen(
        [MDIVICOM, "run", "hang", "--dataset", str(dataset), "--out", str(tmp_path / "out")],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    wait_for(tmp_path / "hanging", timeout=30)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == "Error: interrupted by Ctrl-C (SIGINT)"
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("sig", "name"),
    [
        (signal.SIGTERM, "SIGTERM"),
        (signal.SIGINT, "Ctrl-C (SIGINT)"),
        (signal.SIGHUP, "SIGHUP"),
        (signal.SIGQUIT, "SIGQUIT"),
    ],
)
def test_any_command_stopped_by_a_signal_exits_130_with_one_error_line(site, tmp_path, sig, name):
    """Not only `run`: a command that takes long (here discovery, for `plugins list`; an
    image pull alike) exits 130 on SIGTERM too, not with the shell's 143."""
    _hanging_discovery(site, tmp_path)
    proc = subprocess.Popen(
        [MDIVICOM, "plugins", "list"],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    wait_for(tmp_path / "hanging", timeout=30)
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == [f"Error: interrupted by {name}"]


LEAKS = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    token = config["api_token"]
    if config.get("fail"):
        raise RuntimeError(f"auth failed for token {token}")
    return {**config, "pin": 123456, "warnings": [f"token {token} expires soon"]}
"""


def test_secrets_are_scrubbed_from_the_records_error_warnings_and_result(site, dataset, tmp_path):
    """The record redacts the config; a plugin quoting it must not put the value back."""
    site.plugin("leaky", run_source=LEAKS)
    out = tmp_path / "out"
    common = ["--dataset", str(dataset), "--out", str(out), "--set", "api_token=S3CRET-VALUE"]
    succeeded = site.cli("run", "leaky", *common, "--set", "keyframes=5", "--set", "pin_key=123456")
    failed = site.cli("run", "leaky", *common, "--set", "fail=true", "--overwrite")
    assert (succeeded.returncode, failed.returncode) == (0, 1)
    for result in (succeeded, failed):
        assert "S3CRET-VALUE" not in result.stdout + result.stderr
    for path in (out / "_runs").glob("*.json"):
        assert "S3CRET-VALUE" not in path.read_text()
    good, bad = records(out)
    assert good["result"]["api_token"] == good["result"]["pin_key"] == "***REDACTED***"
    assert good["result"]["pin"] == 123456  # not under a secret-looking key: data
    # a short value under a secret-looking name (a setting, not a secret) is kept as data
    assert good["result"]["keyframes"] == 5 and good["config"]["keyframes"] == "***REDACTED***"
    assert good["warnings"] == ["token ***REDACTED*** expires soon"]
    assert "warning: token ***REDACTED*** expires soon" in succeeded.stderr
    assert bad["error"]["message"] == "auth failed for token ***REDACTED***"
    assert "error:    RuntimeError: auth failed for token ***REDACTED***" in failed.stdout


COPYING_PROVENANCE = """
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_capture_provenance(request):
    return {"config": dict(request.config), "note": f"ran with {request.config['api_token']}"}
"""


def test_secrets_a_provenance_hook_copies_are_scrubbed_from_extensions(site, dataset, tmp_path):
    """A site hook that keeps the config as provenance must not put a secret back
    into the record's `extensions`, readable by the group and exported in crates."""
    site.plugin("leaky", run_source=LEAKS)
    site.module("h_copyprov", COPYING_PROVENANCE)
    site.distribution("copy-prov", {"copyprov": "h_copyprov"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    ran = site.cli(
        "run", "leaky", "--dataset", str(dataset), "--out", str(out),
        "--set", "api_token=S3CRET-VALUE", "--set", "depth=3",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [path] = (out / "_runs").glob("*.json")
    assert "S3CRET-VALUE" not in path.read_text()
    [record] = records(out)
    assert record["extensions"]["copyprov"] == {
        "config": {"api_token": "***REDACTED***", "depth": 3},
        "note": "ran with ***REDACTED***",
    }


FORGER = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    raise RuntimeError("kaput\\n20990101T000000Z_deadbeef  succeeded  lab/x\\r\\x1b[2K\\x07done")
"""
# whitespace (the newline, the carriage return) collapsed into one line, the rest escaped
SHOWN = r"RuntimeError: kaput 20990101T000000Z_deadbeef succeeded lab/x \x1b[2K\x07done"


def test_control_characters_in_record_text_cannot_forge_lines(site, dataset, tmp_path):
    """A plugin's message is shown on one line, its control characters escaped:
    a newline cannot add a row to `runs list`, nor CR or ESC rewrite the terminal."""
    site.plugin("forger", run_source=FORGER)
    out = tmp_path / "out"
    ran = site.cli("run", "forger", "--dataset", str(dataset), "--out", str(out))
    assert ran.returncode == 1
    assert f"error:    {SHOWN}" in ran.stdout.splitlines()
    listing = site.cli("runs", "list", str(out))
    _header, row = listing.stdout.splitlines()
    assert row.endswith(SHOWN) and "\x1b" not in listing.stdout
    batch = tmp_path / "batch"
    ran = site.cli(
        "run", "forger", "--dataset", str(dataset), "--out", str(batch), "--sessions", "*"
    )
    assert ran.returncode == 1
    rows = [line for line in ran.stdout.splitlines() if line.startswith("ses-01")]
    assert len(rows) == 1 and rows[0].endswith(SHOWN)
    assert any(line.endswith(f"ses-01 failed: {SHOWN} (1/1)") for line in ran.stderr.splitlines())
    _header, row = site.cli("runs", "list", str(batch)).stdout.splitlines()
    assert row.endswith(SHOWN)


def test_printable_escapes_every_control_character():
    from mdivicomtools.cli.textui import fields, table
    from mdivicomtools.common.text import printable

    assert printable("a\tb\x00\x7f\x9b\u2028 é ok") == r"a\tb\x00\x7f\x9b\u2028 é ok"
    # a right-to-left override shows `report_txt.exe` as `report_exe.txt`
    assert printable("report_\u202etxt.exe") == r"report_\u202etxt.exe"
    assert printable("\u2066x\u2069\u200f") == r"\u2066x\u2069\u200f"
    assert table(["A", "B"], [["x\ny", "1\r2"]]).splitlines() == ["A     B", r"x\ny  1\r2"]
    assert fields([("k", '{\n  "a": "\x1b"\n}')]).splitlines() == [
        "k:  {",
        '      "a": "\\x1b"',
        "    }",
    ]


def test_table_columns_line_up_as_a_terminal_shows_wide_characters():
    """A batch over `ses-日本` put that row's columns two places left of the others':
    the table counted characters, and a terminal shows each of these in two columns."""
    from mdivicomtools.cli.textui import table

    rows = [["ses-日本", "succeeded", "1"], ["ses-ü02", "failed", "2"], ["ses-e\u0301", "ok", "3"]]
    assert table(["SESSION", "STATUS", "TRIES"], rows).splitlines() == [
        "SESSION   STATUS     TRIES",
        "ses-日本  succeeded  1",
        "ses-ü02   failed     2",
        "ses-e\u0301     ok         3",
    ]


def test_an_echo_to_stdout_does_not_wait_on_the_captured_descriptor(site, dataset, tmp_path):
    """run_plugin(echo=sys.stdout): the echo writes under the log's lock; through the
    pipe that catches descriptor 1 it waited, once the pipe was full, on the reader,
    which waited on the lock."""
    site.plugin(
        "chatty",
        run_source=(
            "import os\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    for n in range(4000):\n"
            "        print('line', n, 'x' * 60)\n"
            "        if n % 500 == 0:\n"
            "            os.write(1, b'raw\\n')\n"
            "    return {}\n"
        ),
    )
    script = (
        "import sys\n"
        "from mdivicomtools import run_plugin\n"
        f"record = run_plugin('chatty', dataset={str(dataset)!r}, out={str(tmp_path / 'o')!r},"
        " echo=sys.stdout)\n"
        "print('STATUS', record.status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=site.env()
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "STATUS succeeded"
    assert sum(line.startswith("line ") for line in lines) == 4000
    assert lines.count("raw") == 8


def test_an_echo_that_hands_lines_to_logging_does_not_echo_itself_again(site, dataset, tmp_path):
    """run_plugin(echo=an adapter that hands each line to `logging`, whose handler
    writes to descriptor 2): while descriptor 2 led into the run log, each line the
    echo wrote came back through the pipe to be echoed again (`LOG LOG LOG ...`),
    in the log and on the terminal, for as long as the run lasted."""
    site.plugin(
        "tool",
        run_source=(
            "import os, time\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    print('from print')\n"
            "    os.write(2, b'from descriptor 2\\n')\n"
            "    time.sleep(0.5)\n"
            "    return {}\n"
        ),
    )
    script = (
        "import logging, sys\n"
        "from mdivicomtools import run_plugin\n"
        "logging.basicConfig(level=logging.INFO, format='LOG %(message)s')\n"
        "class ToLogging:\n"
        "    def write(self, text):\n"
        "        if text.strip():\n"
        "            logging.info(text.rstrip())\n"
        "        return len(text)\n"
        "    def flush(self):\n"
        "        pass\n"
        f"record = run_plugin('tool', dataset={str(dataset)!r}, out={str(tmp_path / 'o')!r},"
        " echo=ToLogging())\n"
        "print('STATUS', record.status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=site.env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "STATUS succeeded\n"
    (log,) = (tmp_path / "o" / "_runs").glob("*.log")
    assert log.read_text() == "from print\n"
    assert result.stderr.splitlines() == ["LOG from print", "from descriptor 2"]
    # an echo held in memory reaches no descriptor: descriptor 2 is still taken in
    script = script.replace("echo=ToLogging()", "echo=io.StringIO(), overwrite=True").replace(
        "import logging, sys", "import io, logging, sys"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=site.env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (log,) = set((tmp_path / "o" / "_runs").glob("*.log")) - {log}
    assert log.read_text() == "from print\nfrom descriptor 2\n"


def test_the_fault_handler_s_traceback_of_a_crash_in_process_reaches_the_terminal(
    site, dataset, tmp_path
):
    """With PYTHONFAULTHANDLER=1, a segfault in an in-process plugin's C code printed
    `Fatal Python error: Segmentation fault` and the plugin's frames on stderr; once
    descriptor 2 led into the run log, the fault handler wrote them into the pipe of
    a process that was dying, and they were lost from the terminal and the log."""
    site.plugin(
        "crasher",
        run_source="import ctypes\ndef run(*a, **k):\n    ctypes.string_at(0)\n",
    )
    result = subprocess.run(
        [MDIVICOM, "run", "crasher", "--dataset", str(dataset), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        env=site.env(PYTHONFAULTHANDLER="1"),
    )
    assert result.returncode == 1, result.stderr
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert 'p_crasher_d/run.py", line 3 in run' in result.stderr
    assert "the runner died from SIGSEGV" in result.stderr


def test_a_python_caller_s_fault_handler_is_left_where_it_writes(site, dataset, tmp_path):
    """A Python caller's fault handler is not moved by a run (the command's is, to the
    terminal while descriptor 2 leads into the log): on descriptor 2 it reports a crash
    after the run there, and one pointed at a file of the caller's still writes there."""
    site.plugin("hello")
    script = (
        "import faulthandler, sys\n"
        "from mdivicomtools import run_plugin\n"
        "if len(sys.argv) > 1:\n"
        "    own = open(sys.argv[1], 'w')\n"
        "    faulthandler.enable(file=own)\n"
        f"record = run_plugin('hello', dataset={str(dataset)!r}, out={str(tmp_path / 'o')!r},"
        " overwrite=True)\n"
        "print(record.status, flush=True)\n"
        "faulthandler._sigsegv()\n"
    )
    env = site.env(PYTHONFAULTHANDLER="1")
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert crashed.stdout == "succeeded\n", crashed.stderr
    assert "Fatal Python error: Segmentation fault" in crashed.stderr
    own = tmp_path / "faults.txt"
    crashed = subprocess.run(
        [sys.executable, "-c", script, str(own)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert crashed.stdout == "succeeded\n", crashed.stderr
    assert "Fatal Python error: Segmentation fault" in own.read_text()
    assert "Fatal Python error" not in crashed.stderr


def test_a_runner_killed_while_its_plugin_ran_isolated_is_not_told_to_isolate(
    site, dataset, tmp_path
):
    """The supervisor advised `run with --isolate to contain it` for a runner killed
    outright, also when the plugin ran isolated already: the runner itself was hit."""
    started = tmp_path / "started"
    site.plugin("sleepy", run_source=slow_plugin(started))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [MDIVICOM, "run", "sleepy", "--dataset", str(dataset), "--out", str(out), "--isolate"],
        stderr=subprocess.PIPE,
        text=True,
        env=site.env(),
    )
    try:
        wait_for(started)
        # the supervisor's child is the runner; the isolated plugin runs below it
        [runner] = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(runner), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    (record,) = records(out)
    assert record["error"]["message"] == (
        "the runner died from SIGKILL (the kernel's OOM killer, or kill -9) while the plugin "
        "ran isolated"
    )
    assert "--isolate" not in stderr.strip().splitlines()[-1]


def test_a_hook_module_that_failed_to_load_is_named_once_in_the_summary(site, dataset, tmp_path):
    """Its hook error is recorded under the hook "(load)", which the summary wrapped
    in parentheses again: `site ((load)): ...`."""
    site.module("site_hooks", "raise ImportError('libsite.so is missing')\n")
    site.distribution("site-hooks", {"site": "site_hooks"}, group="mdivicomtools.hooks")
    site.plugin("writer", run_source=WRITE)
    result = site.cli("run", "writer", "--dataset", str(dataset), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("hook error")]
    assert line.split(":", 1)[1].strip() == (
        "site (load): import failed: ImportError: libsite.so is missing; install what it "
        "imports or fix it, or leave it out with MDIVICOM_DISABLE_HOOKS=site"
    )


def test_runs_clean_json_lists_what_it_did(site, dataset, tmp_path):
    """`runs clean` was the one report without --json: a script had to parse lines."""
    site.plugin("sleepy", run_source=slow_plugin(tmp_path / "started"))
    out = tmp_path / "out"
    killed = subprocess.Popen(
        [MDIVICOM, "run", "sleepy", "--dataset", str(dataset), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=site.env(MDIVICOM_SUPERVISOR="0"),
    )
    try:
        wait_for(tmp_path / "started")
    finally:
        killed.kill()
        killed.wait(timeout=60)
    (record,) = records(out)
    result = site.cli("runs", "clean", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"text": f"removed {out}/_staging/{record['run_id']} (its runner is gone)", "done": True}
    ]
    assert result.stderr == f"1 item(s) cleaned under {out}\n"
    again = site.cli("runs", "clean", str(out), "--json")
    assert (again.returncode, json.loads(again.stdout)) == (0, [])


def test_runs_clean_json_names_what_is_left_and_exits_1(tmp_path, monkeypatch, capsys):
    """One JSON document, with the item left as done false; no {"error"} after it."""
    from mdivicomtools.cli import main
    from mdivicomtools.runner import debris

    left = debris.Cleaned("not all of X (y): could not remove X/z; ...", done=False)
    monkeypatch.setattr(debris, "remove_dead_runs", lambda folder, every_record: [left])
    with pytest.raises(SystemExit) as exited:
        main(["runs", "clean", str(tmp_path), "--json"])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [{"text": left.text, "done": False}]
    assert captured.err.splitlines()[-1] == f"Error: {left.text}"
