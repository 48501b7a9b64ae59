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
    script = (
        "import json, os\n"
        "from mdivicomtools import run_plugin\n"
        "pid = os.getpid()\n"
        f"record = run_plugin('forker', dataset={str(dataset)!r}, out={str(tmp_path / 'out')!r})\n"
        "assert os.getpid() == pid\n"
        "print(json.dumps({'status': record.status, 'result': record.result}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=site.env()
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["status"] == "succeeded", done.stderr
    assert answer["result"] == {"squares": [0, 1, 4, 9], "exitcode": 0}
    # what the forked child prints reaches the run's log, through descriptor 1
    [log] = (tmp_path / "out" / "_runs").glob("*.log")
    assert "from the forked child 3" in log.read_text()


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
