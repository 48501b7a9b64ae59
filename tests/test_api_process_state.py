"""What `run_plugin` leaves of the calling process: a notebook or a pipeline calls it
many times, from threads, and forks of its own, and must find the process as it was."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from mdivicomtools.runner import run_plugin

#: each plugin prints its own name, then waits for the test to say when to return,
#: so two runs overlap and end in the order the test chooses
CHATTY = """
import sys
import p_gate
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    name = config["name"]
    print(name, "started")
    p_gate.inside.wait(30)
    p_gate.release[name].wait(30)
    print(name, "done", file=sys.stderr)
    return {}
"""

GATE = """
import threading
inside = threading.Barrier(2)
release = {"first": threading.Event(), "second": threading.Event()}
"""


def test_runs_overlapping_in_threads_keep_their_own_output_and_leave_the_process_as_it_was(
    site, dataset, tmp_path
):
    site.module("p_gate", GATE)
    site.plugin("first", run_source=CHATTY)
    site.plugin("second", run_source=CHATTY)
    import p_gate

    before = (sys.stdout, sys.stderr, os._exit)

    def go(name: str):
        return run_plugin(
            name,
            dataset=str(dataset),
            out=str(tmp_path / "out"),
            config={"name": name},
            echo=io.StringIO(),
        )

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(go, "first")
        second = pool.submit(go, "second")
        # both are inside their plugin now; the first to start ends first
        p_gate.release["first"].set()
        first_record = first.result(timeout=60)
        p_gate.release["second"].set()
        second_record = second.result(timeout=60)

    for record, name, other in (
        (first_record, "first", "second"),
        (second_record, "second", "first"),
    ):
        assert record.status == "succeeded", record.error
        log = (tmp_path / "out" / "_runs" / f"{record.run_id}.log").read_text()
        assert f"{name} started" in log and f"{name} done" in log
        assert other not in log
    # the caller's streams, os._exit and environment are its own again
    assert (sys.stdout, sys.stderr, os._exit) == before
    assert not [name for name in os.environ if name.startswith("MDIVICOM_RUN")]


FORKING = """
import multiprocessing
def square(x):
    return x * x
def hello(x):
    print("from the forked child", x)
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        squares = pool.map(square, range(4))
    process = multiprocessing.get_context("fork").Process(target=hello, args=(3,))
    process.start()
    process.join()
    return {"squares": squares, "exitcode": process.exitcode}
"""


def test_an_in_process_plugin_may_fork_workers(site, dataset, tmp_path):
    """multiprocessing's fork workers end with os._exit, which must exit them: raised
    as HardExit, each worker went back into the plugin as a second runner.

    In a process of its own, as a notebook's: forked from a pytest worker that
    earlier tests left threads in, a worker can inherit a lock one of them held
    (Python 3.12 warns of it) and hang, whatever the runner does.
    """
    site.plugin("forker", run_source=FORKING)
    out = tmp_path / "out"
    done, record = _in_a_process_of_its_own(site, "forker", dataset, out, via_cli=False)
    assert done.returncode == 0, done.stderr
    assert record["status"] == "succeeded", done.stderr
    assert record["result"] == {"squares": [0, 1, 4, 9], "exitcode": 0}
    # what the forked child prints reaches the run's log, through descriptor 1
    [log] = (out / "_runs").glob("*.log")
    assert "from the forked child 3" in log.read_text()


#: forks one process that waits, stops it with SIGTERM at once, and reports how it ended
SIGTERM_TO_A_FORK = """
import os, signal, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(7)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    return {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
"""

#: forks one process that returns from run() (or raises out of it) instead of exiting
FORK_THAT_COMES_BACK = """
import os
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pid = os.fork()
    if pid == 0:
        if config.get("how") == "raise":
            raise ValueError("the child's own mistake")
        if config.get("how") == "exit":
            raise SystemExit(5)
        return {"who": "child"}
    _, status = os.waitpid(pid, 0)
    return {"who": "parent", "child_exit": os.WEXITSTATUS(status)}
"""


def _in_a_process_of_its_own(site, plugin_id: str, dataset, out, *, via_cli: bool, **run_args):
    """Run the plugin as a script or the CLI would, in a fresh process; its
    output and the one record the run left. The script fails if it returns in
    another process than it started in (a forked child come back as a runner)."""
    if via_cli:
        args = ["run", plugin_id, "--dataset", str(dataset), "--out", str(out), "--json"]
        for key, value in run_args.get("config", {}).items():
            args += ["--set", f"{key}={value}"]
        if run_args.get("isolate"):
            args.append("--isolate")
        done = site.cli(*args)
    else:
        script = (
            "import os\n"
            "from mdivicomtools import run_plugin\n"
            "pid = os.getpid()\n"
            f"run_plugin({plugin_id!r}, dataset={str(dataset)!r}, out={str(out)!r}, "
            f"**{run_args!r})\n"
            "assert os.getpid() == pid\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env=site.env(),
        )
    records = list((out / "_runs").glob("*.json"))
    assert len(records) == 1, (records, done.stderr)
    return done, json.loads(records[0].read_text())


def test_a_process_the_plugin_forks_takes_sigterm_as_python_would(site, dataset, tmp_path):
    """The runner turns SIGTERM into an interrupt; a forked process got that handler
    too, and SIGTERM sent it back up the plugin's stack into the runner as a second
    run (and a Pool's worker signalled before it first ran never ended)."""
    site.plugin("stopper", run_source=SIGTERM_TO_A_FORK)
    for via_cli in (False, True):
        out = tmp_path / f"out-{via_cli}"
        done, record = _in_a_process_of_its_own(site, "stopper", dataset, out, via_cli=via_cli)
        assert record["status"] == "succeeded", done.stderr
        assert record["result"] == {"signal": 15, "exit": None}


def test_a_process_the_plugin_forks_never_comes_back_as_a_second_runner(site, dataset, tmp_path):
    site.plugin("comeback", run_source=FORK_THAT_COMES_BACK)
    cases = [
        ("return", 0, "returned from the plugin's run()"),
        ("raise", 1, "ValueError: the child's own mistake"),
        ("exit", 5, None),
    ]
    for how, status, said in cases:
        for isolate in (False, True):
            out = tmp_path / f"out-{how}-{isolate}"
            done, record = _in_a_process_of_its_own(
                site,
                "comeback",
                dataset,
                out,
                via_cli=False,
                config={"how": how},
                isolate=isolate,
            )
            assert done.returncode == 0, done.stderr
            assert record["status"] == "succeeded", (how, isolate, done.stderr)
            assert record["result"] == {"who": "parent", "child_exit": status}
            # in-process its stderr is the terminal's; isolated, the child's goes to the log
            told = done.stderr + (out / "_runs" / f"{record['run_id']}.log").read_text()
            if said:
                assert said in told and "which the plugin forked" in told
            else:
                assert "which the plugin forked" not in told


def test_a_plugin_that_changes_folder_leaves_the_caller_where_it_was(site, dataset, tmp_path):
    """An in-process plugin's os.chdir carried over: the caller's next relative path
    resolved in the plugin's folder."""
    site.plugin(
        "mover",
        run_source=(
            "import os\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    os.chdir(out_dir)\n"
            "    open('made-here.txt', 'w').close()\n"
            "    return {}\n"
        ),
    )
    before = os.getcwd()
    record = run_plugin("mover", dataset=str(dataset), out=str(tmp_path / "out"))
    assert record.status == "succeeded", record.error
    assert os.getcwd() == before
    assert (tmp_path / "out" / "mover" / "made-here.txt").is_file()


MESSY = """
import logging, os, sys
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    seen = {
        "env": os.environ.get("P_MESSY_THREADS"),
        "path0": sys.path[0],
        "handlers": len(logging.getLogger().handlers),
        "level": logging.getLogger().level,
    }
    os.environ["P_MESSY_THREADS"] = "1"
    os.environ.pop("P_MESSY_CALLERS", None)
    sys.path.insert(0, "/p-messy-plugin-folder")
    logging.basicConfig(level=logging.DEBUG, force=True)
    return seen
"""


def test_what_a_plugin_changes_of_the_environment_path_and_logging_is_put_back(
    site, dataset, tmp_path, monkeypatch
):
    """A Dask worker runs session after session in one process, a notebook calls
    run_plugin again and again: the next session's plugin ran with the variables,
    sys.path and root logger the previous one left."""
    import logging

    site.plugin("messy", run_source=MESSY)
    monkeypatch.setenv("P_MESSY_CALLERS", "kept")
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    monkeypatch.setattr(root, "level", logging.WARNING)
    before = (dict(os.environ), list(sys.path), list(root.handlers), root.level)
    try:
        first = run_plugin("messy", dataset=str(dataset), out=str(tmp_path / "a"))
        assert (dict(os.environ), list(sys.path), list(root.handlers), root.level) == before
        second = run_plugin("messy", dataset=str(dataset), out=str(tmp_path / "b"))
    finally:
        root.removeHandler(handler)
    assert first.status == second.status == "succeeded"
    assert second.result == first.result
    assert second.result["env"] is None and second.result["level"] == logging.WARNING
    assert second.result["path0"] != "/p-messy-plugin-folder"


ASYNC_PLUGIN = """
import asyncio
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    async def fetch():
        await asyncio.sleep(0)
        return 42
    return {"fetched": asyncio.run(fetch())}
"""


def test_a_plugin_using_asyncio_runs_from_a_caller_inside_an_event_loop(site, dataset, tmp_path):
    """A notebook kernel runs each cell inside its asyncio loop: an in-process plugin
    calling asyncio.run() failed there only, `asyncio.run() cannot be called from a
    running event loop`, where `mdivicom run` and a script ran it."""
    import asyncio

    site.plugin("fetcher", run_source=ASYNC_PLUGIN)

    async def cell() -> tuple[object, bool]:
        # as a notebook cell does: synchronous code while the kernel's loop runs
        record = run_plugin("fetcher", dataset=str(dataset), out=str(tmp_path / "out"))
        return record, asyncio.get_running_loop() is loop

    loop = asyncio.new_event_loop()
    try:
        record, same_loop = loop.run_until_complete(cell())
    finally:
        loop.close()
    assert record.status == "succeeded", record.error
    assert record.result == {"fetched": 42}
    assert same_loop  # the caller's loop is running there again afterwards


UMASK = """
import os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    os.umask(0)
    pathlib.Path(out_dir, "r.txt").write_text("r")
    return {}
"""


def test_a_plugins_umask_is_put_back_before_its_record_is_written(site, dataset, tmp_path):
    """A plugin's `os.umask(0)` stayed the process's: its own record and `_runs/datasets/`
    were made world-writable (0666, 0777), so any local user could rewrite the
    sha256s `verify` compares with, and so was everything every later run in the
    process (a notebook, a Dask worker) made."""
    site.plugin("open", run_source=UMASK)
    before = os.umask(0o022)
    try:
        record = run_plugin("open", dataset=str(dataset), out=str(tmp_path / "out"))
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
    assert record.status == "succeeded", record.error
    runs = tmp_path / "out" / "_runs"
    assert (runs / f"{record.run_id}.json").stat().st_mode & 0o777 == 0o644
    assert (runs / "datasets").stat().st_mode & 0o777 == 0o755
