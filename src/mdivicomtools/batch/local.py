"""The local executor: sessions in worker processes of their own on this machine."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import threading
from collections import deque
from typing import Any, Literal

import msgspec

from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SessionJob,
    SessionResult,
    not_started,
    run_session,
)
from mdivicomtools.common.platform import die_with_parent
from mdivicomtools.common.signals import signal_of
from mdivicomtools.common.timing import POLL_S
from mdivicomtools.errors import UsageError


class LocalExecutor:
    """Up to `jobs` sessions at once, each in a worker process of its own.

    A process per session (forked from this one, which has already imported
    everything) costs a few milliseconds, and a worker that dies (a segfault,
    os._exit, the OOM killer) costs exactly its own session, which is recorded
    as failed; a shared pool would break for every session queued behind it.
    Forking is safe only while this process runs no other thread: a lock
    another thread holds at that moment (a log stream's, an allocator's) stays
    locked in the child for ever. The command line keeps the batch
    single-threaded; a caller that is not (a Jupyter kernel, a script with a
    Dask client) gets spawned workers instead, a fresh interpreter each (about
    half a second more per session).
    """

    name = "local"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.address: str | None = None

    def run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        # by literal name: typeshed types get_context(str) as BaseContext, which has no Process
        context: multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext
        if start_method() == "fork":
            context = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("spawn")
        pending = deque(jobs)
        running: dict[Any, tuple[Any, Any, SessionJob]] = {}
        results: list[SessionResult] = []
        interrupted: BaseException | None = None
        while pending or running:
            try:
                while pending and len(running) < self.jobs and interrupted is None:
                    job = pending.popleft()
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_worker_main, args=(job, sender))
                    process.start()
                    sender.close()
                    running[process.sentinel] = (process, receiver, job)
                    report("started", job, None)
                for sentinel in multiprocessing.connection.wait(list(running), timeout=POLL_S):
                    process, receiver, job = running.pop(sentinel)
                    result = _collect(process, receiver, job)
                    results.append(result)
                    report("finished", job, result)
            except KeyboardInterrupt as exc:
                if interrupted is not None:  # a second Ctrl-C: stop waiting
                    for process, _, _ in running.values():
                        process.kill()
                    continue
                interrupted = exc
                signum = signal_of(exc)
                for process, _, _ in running.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signum)
                while pending:
                    job = pending.popleft()
                    result = not_started(job)
                    results.append(result)
                    report("finished", job, result)
        if interrupted is not None:
            raise BatchInterrupted(results) from interrupted
        return results


def start_method() -> Literal["fork", "spawn"]:
    """How a worker is started: fork while this process runs no other thread."""
    return "fork" if threading.active_count() == 1 else "spawn"


def _interrupt_once(signum: int, frame: object) -> None:
    """Ctrl-C on a terminal reaches the worker twice (from the terminal and
    forwarded by the batch): the first stops the session, later ones are ignored
    so that the session's result still reaches the batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker_main(job: SessionJob, sender: Any) -> None:
    # the parent's handlers (and its SIGTERM-as-interrupt) are not this process's;
    # a SIGINT the parent ignores (a background job) stays ignored here too
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # a batch killed with SIGKILL stops its workers: SIGTERM interrupts the
    # session's run, which records itself as interrupted
    die_with_parent(signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the batch died before the request above took effect
    try:
        result = run_session(job)
        # pickled built-ins, not msgpack: a session folder whose name is not UTF-8
        # puts surrogate escapes in the result, which msgpack refuses (the worker
        # then died without a result, and its session was reported as WorkerDied)
        sender.send(msgspec.to_builtins(result))
    finally:
        sender.close()
        # skip the parent's atexit handlers and buffered output inherited by fork
        # (a spawned worker has neither to skip, and ends the same way)
        os._exit(0)


def _collect(process: Any, receiver: Any, job: SessionJob) -> SessionResult:
    data = None
    with contextlib.suppress(EOFError, OSError):
        if receiver.poll():
            data = receiver.recv()
    receiver.close()
    process.join()
    if data is not None:
        return msgspec.convert(data, SessionResult)
    code = process.exitcode
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit status {code}"
    return SessionResult(
        session=job.session,
        status="failed",
        error=f"WorkerDied: the worker process died ({how})",
        out=job.out,
    )
