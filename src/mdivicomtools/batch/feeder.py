"""Handing sessions to Dask workers one at a time, each to a worker with nothing to do.

Dask assigns a task to a worker as soon as it is submitted and, when every
worker is busy, queues it behind a running one. On Slurm a worker is a job
that can be cancelled, pre-empted or lose its node at any time, and a session
queued on it is then lost with it without ever having run (with `--retries 0`
it fails for nothing). So a session is pinned to a worker that runs nothing,
and the sessions still waiting wait here, where no worker's end can reach
them. Worker jobs that start late are given work as they join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SessionJob,
    SessionResult,
    not_started,
    run_session,
    unseen,
)

#: seconds between looks at the workers while every session placed is still running
POLL_S = 0.2
#: seconds between asking whether worker jobs may still join, while none is connected
IDLE_POLL_S = 1.0
#: seconds without any worker before a batch says what it is waiting for
WAITING_NOTE_S = 30.0
#: seconds between looks while a batch waits for its first worker
FIRST_WORKER_POLL_S = 2.0

#: why the sessions left fail when the worker jobs are gone (the usual reason);
#: no_worker_left prefixes a reason with "WorkerLost: ", which makes the batch treat
#: the session as lost (retry.is_lost), so --retries reruns it
JOBS_ENDED = "every worker job of this batch ended before the session could start"

#: why distributed cancels every future of a client whose scheduler went away
SCHEDULER_LOST = "scheduler-connection-lost"

#: where the scheduler of a cluster a batch starts serves HTTP: Dask starts that
#: server even with no dashboard asked for, on port 8787 when it is free and with a
#: "Port 8787 is already in use" warning on the terminal when not (a second batch,
#: a notebook's own cluster). Loopback and any free port: nothing here reads it.
SCHEDULER_HTTP = "127.0.0.1:0"


class _Placed(msgspec.Struct, frozen=True):
    future: Any
    job: SessionJob
    worker: str


class _CancelRace(logging.Filter):
    """Drops distributed's own NameError from its handling of Ctrl-C.

    distributed.utils.sync (2026.8) cancels the call the main thread waits on
    when Ctrl-C interrupts the wait; when Ctrl-C lands before that call has
    started, its `cancel` reads a variable not yet assigned, and the event
    loop logs a NameError traceback after the batch's own summary (seen in
    the Slurm Ctrl-C test, once in many runs). The batch handles the interruption
    itself and nothing is lost; the traceback only misleads. Other errors,
    NameErrors elsewhere included, pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, NameError):
            return True
        last = error.__traceback__
        while last is not None and last.tb_next is not None:
            last = last.tb_next
        if last is None:
            return True
        code = last.tb_frame.f_code
        where = os.path.join("distributed", "utils.py")
        return not (code.co_name == "cancel" and code.co_filename.endswith(where))


class _ClosedCommNote(logging.Filter):
    """Drops distributed's INFO note, with its traceback, that a comm closed while a
    batched message was being sent.

    A cluster the batch starts (dask-jobqueue's) keeps distributed's logs at
    ERROR while it lives, and puts them back (INFO, to the terminal) when it
    closes; a comm that closes later in the teardown, as on Ctrl-C, then prints
    "Batched Comm Closed" with a CommClosedError traceback before the batch's
    summary (seen once in the Slurm Ctrl-C test). A closed comm is what the
    teardown does; warnings and errors, of any kind, pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        closed = type(error).__name__ == "CommClosedError"
        return record.levelno >= logging.WARNING or not closed


class _KilledWorkerNote(logging.Filter):
    """Drops the scheduler's ERROR that a task failed because its worker died.

    The scheduler of a cluster the batch starts runs in this process and logs
    `Task mdivicom-ses-02-... marked as failed because 1 workers died while
    trying to run it` on the terminal, above the batch's own line for that
    session, which says what was lost and why. Other records pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "workers died while trying to run it" not in record.getMessage()


_QUIETED = {
    "tornado.application": _CancelRace(),
    "distributed.batched": _ClosedCommNote(),
    "distributed.scheduler": _KilledWorkerNote(),
}


def quiet_teardown_noise() -> None:
    """Keep distributed's Ctrl-C NameError (_CancelRace), its closed-comm notes
    (_ClosedCommNote) and its notes of tasks lost with their worker
    (_KilledWorkerNote) off the terminal, for the rest of the process: the event loop
    may log them after the batch returns."""
    for name, noise in _QUIETED.items():
        logger = logging.getLogger(name)
        if noise not in logger.filters:
            logger.addFilter(noise)


class _SchedulerGone(logging.Filter):
    """Drops distributed's client log records of a lost scheduler connection.

    When the scheduler goes away the client logs its reconnection attempts
    (the comm closed, connecting cancelled as the batch closes it), with
    tracebacks, on the terminal; the batch says in one line that the scheduler
    was lost and what became of each session. Other records pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (OSError, asyncio.CancelledError)):
            return False
        if type(error).__name__ == "CommClosedError":
            return False
        return "reconnect" not in record.getMessage()


@contextlib.contextmanager
def quiet_scheduler_loss() -> Iterator[None]:
    """distributed's client logs off the terminal while a batch uses its scheduler."""
    logger = logging.getLogger("distributed.client")
    quiet = _SchedulerGone()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def feed_idle_workers(
    client: Any,
    jobs: list[SessionJob],
    report: Report,
    *,
    no_worker_can_join: Callable[[], str | None],
    task: Callable[[SessionJob], SessionResult] = run_session,
    job_of: Callable[[str], str | None] = lambda worker: None,
    explain: Callable[[SessionResult], SessionResult] = lambda result: result,
) -> list[SessionResult]:
    """Run `jobs` with `task`, each on a worker that runs nothing else; results in job order.

    `no_worker_can_join` gives None while a worker can still connect (a worker
    job queued or starting), else why not; it is asked only while no worker is
    connected and no session runs, and once it gives a reason the sessions left
    fail as lost with it.

    On Ctrl-C the running sessions are not waited for: their workers are
    ended with the cluster, and the batch records them as interrupted (see
    `retry.settle`); the waiting ones are not started.

    `job_of` gives the Slurm job of a worker (asked once per worker, while it is
    connected): a try whose worker is lost or ended returns no result of its
    own, and its record and the summary must still name the job it ran in.
    `explain` may say better than Dask why a try ended (a Slurm job's time limit),
    before the try is reported.
    """
    from distributed import wait

    waiting = deque(jobs)
    running: dict[str, _Placed] = {}
    results: dict[str, SessionResult] = {}
    announced: set[str] = set()
    jobs_of: dict[str, str | None] = {}

    def finish(job: SessionJob, result: SessionResult) -> None:
        results[job.session] = result
        report("finished", job, result)

    try:
        while waiting or running:
            workers = set(client.nthreads())
            busy = {placed.worker for placed in running.values()}
            for worker in sorted(workers - busy):
                if not waiting:
                    break
                job = waiting.popleft()
                if worker not in jobs_of:
                    jobs_of[worker] = job_of(worker)
                future = client.submit(
                    task,
                    job,
                    pure=False,
                    key=task_key(job),
                    workers=[worker],
                    allow_other_workers=False,
                )
                running[future.key] = _Placed(future, job, worker)
                if job.session not in announced:
                    announced.add(job.session)
                    report("started", job, None)
            for key in _stranded(client, running, workers):
                # pinned to a worker that left before the scheduler could place it:
                # it never ran, so it goes back to the front of the queue
                placed = running.pop(key)
                placed.future.cancel()
                waiting.appendleft(placed.job)
            if not running:
                reason = no_worker_can_join() if waiting and not workers else None
                if reason is not None:
                    while waiting:
                        job = waiting.popleft()
                        finish(job, no_worker_left(job, reason))
                    break
                time.sleep(IDLE_POLL_S if not workers else POLL_S)
                continue
            for future in _first_done(wait, [placed.future for placed in running.values()]):
                placed = running.pop(future.key)
                result = session_result(future, placed.job)
                result.slurm_job_id = result.slurm_job_id or jobs_of.get(placed.worker)
                finish(placed.job, explain(result))
    except KeyboardInterrupt as exc:
        pending = [placed.future for placed in running.values()]
        client.cancel([future for future in pending if future.status == "pending"])
        for placed in running.values():
            # ended with its worker: `retry.settle` records it, in the job it ran in
            stopped = not_started(placed.job)
            stopped.slurm_job_id = jobs_of.get(placed.worker)
            results[placed.job.session] = stopped
        for job in waiting:
            finish(job, not_started(job))
        raise BatchInterrupted(in_order(jobs, results)) from exc
    return in_order(jobs, results)


def wait_for_a_worker(
    client: Any,
    note: str,
    say: Callable[[str], None],
    gone: Callable[[], str | None] = lambda: None,
) -> str | None:
    """Wait until a worker connects (None), or until `gone` says why none will.

    A batch waiting in silence looks hung: after WAITING_NOTE_S without a
    worker it says `note` (what it waits for, and what the user can do) once.
    """
    started = time.monotonic()
    noted = False
    while True:
        try:
            client.wait_for_workers(1, timeout=FIRST_WORKER_POLL_S)
            return None
        except (TimeoutError, asyncio.TimeoutError):
            pass
        reason = gone()
        if reason is not None:
            return reason
        if not noted and time.monotonic() - started >= WAITING_NOTE_S:
            say(note)
            noted = True


def task_key(job: SessionJob) -> str:
    """A Dask key of one try of `job`: the session is readable in Dask's own logs,
    and no two tries share a key (Dask would hand back the earlier result)."""
    return f"mdivicom-{job.session}-{os.urandom(4).hex()}"


def in_order(jobs: Iterable[SessionJob], results: dict[str, SessionResult]) -> list[SessionResult]:
    """One result per job, in the jobs' order; a job without one was not started."""
    return [results.get(job.session) or not_started(job) for job in jobs]


def no_worker_left(job: SessionJob, reason: str) -> SessionResult:
    """A session that never started because no worker was left to run it (lost: retried)."""
    return SessionResult(
        session=job.session, status="failed", error=f"WorkerLost: {reason}", out=job.out
    )


def _first_done(wait: Callable[..., Any], futures: list[Any]) -> Iterable[Any]:
    """The futures done within POLL_S (none on timeout), so that new workers are seen."""
    try:
        done, _ = wait(futures, timeout=POLL_S, return_when="FIRST_COMPLETED")
    except (TimeoutError, asyncio.TimeoutError):
        return ()
    return done


def _stranded(client: Any, running: dict[str, _Placed], workers: set[str]) -> list[str]:
    """Keys of sessions pinned to a worker that left and never placed on it.

    A session that was running there fails on its own (Dask's KilledWorker,
    allowed-failures 0); only the scheduler can tell the two apart.
    """
    gone = [
        key
        for key, placed in running.items()
        if placed.worker not in workers and not placed.future.done()
    ]
    if not gone:
        return []
    return list(client.run_on_scheduler(_never_placed, gone))


def _never_placed(keys: list[str], dask_scheduler: Any = None) -> list[str]:
    """On the scheduler: which of `keys` wait for a worker they may not leave for."""
    tasks = dask_scheduler.tasks
    return [key for key in keys if key in tasks and tasks[key].state == "no-worker"]


def cancel_reason(future: Any) -> str | None:
    """Why distributed cancelled `future` (SCHEDULER_LOST, ...); None if it was not."""
    if future.status != "cancelled":
        return None
    # the FutureCancelledError the future holds: asking the future itself
    # (`result`, `exception`) goes through the client's event loop, and times out
    # at once when asked not to wait
    error = getattr(getattr(future, "_state", None), "exception", None)
    return getattr(error, "reason", None)


def session_result(future: Any, job: SessionJob) -> SessionResult:
    """A finished future's result; a lost worker fails only this session, not the batch.

    A future cancelled because the scheduler went away says nothing of the
    session, which its worker may have finished: its records tell (`unseen`).
    """
    if future.status == "cancelled":
        if cancel_reason(future) == SCHEDULER_LOST:
            return unseen(job, "the connection to the Dask scheduler was lost")
        return not_started(job)
    try:
        return future.result()
    except Exception as exc:  # KilledWorker and friends: this session, not the batch
        return SessionResult(
            session=job.session, status="failed", error=f"{type(exc).__name__}: {exc}", out=job.out
        )
