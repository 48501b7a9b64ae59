"""feed_idle_workers on a real in-process Dask cluster: one session per idle worker.

The Slurm executor's tests (test_batch_slurm.py) prove the same against real
worker jobs; these pin down the cases a real cluster makes hard to time: a
worker that joins late, every worker gone, a worker leaving before its session
was placed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster, get_worker

from mdivicomtools.batch import feeder
from mdivicomtools.batch.feeder import JOBS_ENDED, feed_idle_workers
from mdivicomtools.batch.retry import is_lost
from mdivicomtools.batch.session import SessionJob, SessionResult
from mdivicomtools.model.options import RunOptions

#: sessions named here block until the test sets the event
SLOW: dict[str, threading.Event] = {}
#: session -> the worker that ran it
RAN_ON: dict[str, str] = {}


def fake_session(job: SessionJob) -> SessionResult:
    RAN_ON[job.session] = get_worker().address
    if job.session in SLOW:
        SLOW[job.session].wait(60)
    return SessionResult(session=job.session, status="succeeded", out=job.out)


def jobs(tmp_path: Path, count: int) -> list[SessionJob]:
    return [
        SessionJob(
            session=f"ses-{n:02d}",
            ref="fake",
            options=RunOptions(dataset=str(tmp_path / f"ses-{n:02d}"), out=str(tmp_path / "out")),
        )
        for n in range(1, count + 1)
    ]


@pytest.fixture
def cluster():
    SLOW.clear()
    RAN_ON.clear()
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield local, client
    for event in SLOW.values():
        event.set()


def until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def feed_in_thread(client, todo, **kwargs):
    """Run the feeder in a thread; its results and the reported events come back."""
    events: list[tuple[str, str]] = []
    out: dict[str, list[SessionResult]] = {}

    def report(event, job, result):
        events.append((event, job.session))

    def run():
        out["results"] = feed_idle_workers(client, todo, report, task=fake_session, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out, events


def test_sessions_wait_for_an_idle_worker_and_a_late_worker_gets_them(cluster, tmp_path):
    local, client = cluster
    SLOW["ses-01"] = threading.Event()
    (first,) = client.nthreads()
    thread, out, events = feed_in_thread(client, jobs(tmp_path, 4), no_worker_can_join=lambda: None)
    until(lambda: "ses-01" in RAN_ON)
    time.sleep(1.0)  # the one worker is busy: nothing else may be handed to it
    assert events == [("started", "ses-01")]
    assert len(client.processing()[first]) == 1
    local.scale(2)  # a worker job that starts late
    until(lambda: len(RAN_ON) == 4)
    second = RAN_ON["ses-02"]
    assert second != first
    assert {RAN_ON[s] for s in ("ses-02", "ses-03", "ses-04")} == {second}
    SLOW["ses-01"].set()
    thread.join(30)
    assert [r.status for r in out["results"]] == ["succeeded"] * 4


def test_a_lost_worker_costs_only_the_session_it_ran(cluster, tmp_path):
    local, client = cluster
    SLOW["ses-01"] = threading.Event()
    thread, out, _ = feed_in_thread(client, jobs(tmp_path, 4), no_worker_can_join=lambda: None)
    until(lambda: "ses-01" in RAN_ON)
    lost = RAN_ON["ses-01"]
    local.scale(2)
    until(lambda: len(RAN_ON) == 4)
    (name,) = [n for n, w in local.workers.items() if w.address == lost]
    local.sync(local.workers[name].close, executor_wait=False)
    thread.join(30)
    results = {r.session: r for r in out["results"]}
    assert results["ses-01"].status == "failed" and is_lost(results["ses-01"])
    assert results["ses-01"].error.startswith("KilledWorker")
    assert [results[s].status for s in ("ses-02", "ses-03", "ses-04")] == ["succeeded"] * 3


def test_with_no_worker_left_the_waiting_sessions_fail_as_lost(cluster, tmp_path):
    local, client = cluster
    SLOW["ses-01"] = threading.Event()
    thread, out, events = feed_in_thread(
        client, jobs(tmp_path, 3), no_worker_can_join=lambda: JOBS_ENDED
    )
    until(lambda: "ses-01" in RAN_ON)
    (name,) = local.workers
    local.sync(local.workers[name].close, executor_wait=False)
    thread.join(30)
    assert not thread.is_alive()
    first, second, third = out["results"]
    assert first.error.startswith("KilledWorker")
    assert second.error == third.error == f"WorkerLost: {JOBS_ENDED}"
    assert all(is_lost(r) for r in out["results"])
    assert ("finished", "ses-03") in events and ("started", "ses-03") not in events


def test_a_session_pinned_to_a_worker_that_left_is_placed_again(cluster, tmp_path):
    """A worker seen idle can leave before the scheduler places the session on it."""
    _, client = cluster

    class OneGhostWorker:
        """The client, but its first look at the workers shows one that has gone."""

        looks = 0

        def __getattr__(self, name):
            return getattr(client, name)

        def nthreads(self):
            self.looks += 1
            found = dict(client.nthreads())
            if self.looks == 1:
                found = {"tcp://127.0.0.1:9": 1, **found}
            return found

    thread, out, events = feed_in_thread(
        OneGhostWorker(), jobs(tmp_path, 2), no_worker_can_join=lambda: None
    )
    thread.join(30)
    assert [r.status for r in out["results"]] == ["succeeded", "succeeded"]
    assert set(RAN_ON.values()) == set(client.nthreads())
    assert [e for e in events if e[0] == "started"] == [
        ("started", "ses-01"),
        ("started", "ses-02"),
    ]


def _raised_in(filename: str, source: str) -> NameError:
    """A NameError raised by `cancel()` compiled as if it lived in `filename`."""
    scope: dict = {}
    exec(compile(source, filename, "exec"), scope)
    try:
        scope["cancel"]()
    except NameError as error:
        return error
    raise AssertionError("no NameError")


def _logged(error: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "tornado.application",
        logging.ERROR,
        __file__,
        1,
        "Exception in callback %r",
        ("cancel",),
        (type(error), error, error.__traceback__),
    )


def test_distributed_ctrl_c_race_is_kept_off_the_terminal_and_nothing_else():
    """distributed.utils.sync's Ctrl-C `cancel` can read its future before the call
    made it (a NameError the event loop logs after the batch's summary): that
    record is dropped, once installed; a NameError of any other code, and other
    errors, still reach the terminal."""
    race = _raised_in(
        "/site-packages/distributed/utils.py", "def cancel():\n    if future:\n        pass\n"
    )
    elsewhere = _raised_in("/site-packages/mine.py", "def cancel():\n    future\n")
    feeder.quiet_teardown_noise()
    feeder.quiet_teardown_noise()  # once, however often the executors ask
    logger = logging.getLogger("tornado.application")
    assert logger.filters.count(feeder._QUIETED["tornado.application"]) == 1
    assert not logger.filter(_logged(race))
    assert logger.filter(_logged(elsewhere))
    assert logger.filter(_logged(ValueError("other")))


def test_distributed_closed_comm_notes_are_kept_off_the_terminal_and_nothing_else():
    """A comm closing in the teardown after Ctrl-C: distributed.batched notes it at
    INFO with a CommClosedError traceback, which printed before a Slurm batch's
    summary once the cluster had put distributed's logging back. That note is
    dropped; a warning or error about a closed comm, and other INFO notes, pass."""
    from distributed.comm.core import CommClosedError

    feeder.quiet_teardown_noise()
    logger = logging.getLogger("distributed.batched")
    assert logger.filters.count(feeder._QUIETED["distributed.batched"]) == 1
    try:
        raise CommClosedError("in <TCP (closed)>")
    except CommClosedError:
        closed = sys.exc_info()

    def record(level: int, exc_info) -> logging.LogRecord:
        return logging.LogRecord(
            "distributed.batched", level, __file__, 1, "Batched Comm Closed %r", ("c",), exc_info
        )

    assert not logger.filter(record(logging.INFO, closed))
    assert logger.filter(record(logging.WARNING, closed))
    assert logger.filter(record(logging.ERROR, closed))
    assert logger.filter(record(logging.INFO, None))
