"""Where the sessions of a batch run: local worker processes, or Dask distributed.

Both executors run `run_session` for each SessionJob and report each
SessionResult as it finishes. Every session is an ordinary `run_plugin` call in
the worker, so each keeps all the guarantees of a single run (staging, records,
isolation); the executor only decides where and how many at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from mdivicomtools.errors import MdivicomError, UsageError
from mdivicomtools.signals import signal_of

SCHEDULER_ENV = "MDIVICOM_DASK_SCHEDULER"
_POLL_S = 0.2


class SessionJob(msgspec.Struct, kw_only=True):
    """One session of a batch: everything a worker needs, nothing it cannot pickle."""

    session: str
    ref: str
    dataset: str
    out: str
    work: str | None
    config: dict[str, Any]
    backend: str | None
    dry_run: bool
    timeout: float | None
    overwrite: bool
    isolate: bool
    strict_bundles: bool | None


class SessionResult(msgspec.Struct, kw_only=True):
    session: str
    status: str
    run_id: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    out: str | None = None


def run_session(job: SessionJob) -> SessionResult:
    """Run one session in this process; every outcome becomes a SessionResult."""
    from mdivicomtools.runner import RunInterrupted, run_plugin

    started = time.monotonic()

    def result(status: str, error: str | None = None, record: Any = None) -> SessionResult:
        return SessionResult(
            session=job.session,
            status=status,
            run_id=record.run_id if record is not None else None,
            duration_s=round(time.monotonic() - started, 3),
            error=error,
            out=job.out,
        )

    try:
        record = run_plugin(
            job.ref,
            dataset=job.dataset,
            out=job.out,
            config=job.config,
            work=job.work,
            backend=job.backend,
            dry_run=job.dry_run,
            timeout=job.timeout,
            overwrite=job.overwrite,
            isolate=job.isolate,
            strict_bundles=job.strict_bundles,
        )
    except RunInterrupted as exc:
        return result("interrupted", "interrupted", exc.record)
    except KeyboardInterrupt:
        return result("interrupted", "interrupted before the run started")
    except MdivicomError as exc:
        return result("failed", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug must cost one session, not the batch
        return result("failed", f"{type(exc).__name__}: {exc}")
    error = f"{record.error.type}: {record.error.message}" if record.error else None
    return result(record.status, error, record)


Report = Callable[[str, SessionJob, SessionResult | None], None]


class LocalExecutor:
    """Up to `jobs` sessions at once, each in a forked worker process of its own.

    A process per session (forked from this one, which has already imported
    everything) costs a few milliseconds, and a worker that dies (a segfault,
    os._exit, the OOM killer) costs exactly its own session, which is recorded
    as failed; a shared pool would break for every session queued behind it.
    """

    name = "local"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.address: str | None = None

    def run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        context = multiprocessing.get_context("fork")
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
                for sentinel in multiprocessing.connection.wait(list(running), timeout=_POLL_S):
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
                    result = SessionResult(
                        session=job.session,
                        status="not_started",
                        error="the batch was interrupted",
                        out=job.out,
                    )
                    results.append(result)
                    report("finished", job, result)
        if interrupted is not None:
            raise BatchInterrupted(results) from interrupted
        return results


def _worker_main(job: SessionJob, sender: Any) -> None:
    # the parent's handlers (and its SIGTERM-as-interrupt) are not this process's
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        result = run_session(job)
        sender.send(msgspec.msgpack.encode(result))
    finally:
        sender.close()
        # skip the parent's atexit handlers and buffered output inherited by fork
        os._exit(0)


def _collect(process: Any, receiver: Any, job: SessionJob) -> SessionResult:
    data = None
    with contextlib.suppress(EOFError, OSError):
        if receiver.poll():
            data = receiver.recv()
    receiver.close()
    process.join()
    if data is not None:
        return msgspec.msgpack.decode(data, type=SessionResult)
    code = process.exitcode
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit status {code}"
    return SessionResult(
        session=job.session,
        status="failed",
        error=f"WorkerDied: the worker process died ({how})",
        out=job.out,
    )


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a batch; `results` holds every session's outcome."""

    def __init__(self, results: list[SessionResult]) -> None:
        super().__init__("batch interrupted")
        self.results = results


class DaskExecutor:
    """Sessions as tasks on a Dask distributed cluster (or a LocalCluster).

    Each task runs one session in a worker; python plugins run in the worker
    process, container plugins on the engine of the worker's machine. A
    worker that dies mid-session makes Dask retry the task on another worker;
    on the LocalCluster started here that happens once, after which the session
    is failed (KilledWorker). Ctrl-C cancels the sessions not yet started and
    waits for the running ones (a second Ctrl-C stops waiting).
    """

    name = "dask"

    def __init__(self, scheduler: str | None, jobs: int) -> None:
        self.scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        self.jobs = jobs
        self.address: str | None = self.scheduler

    def run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise UsageError(
                "the dask executor needs dask.distributed: pip install 'mdivicomtools[dask]'"
            ) from None
        with contextlib.ExitStack() as stack:
            if self.scheduler:
                try:
                    client = stack.enter_context(Client(self.scheduler, timeout=15))
                except OSError as exc:
                    raise UsageError(
                        f"cannot reach the Dask scheduler at {self.scheduler}: {exc}"
                    ) from None
            else:
                stack.enter_context(
                    dask.config.set(
                        {
                            "distributed.scheduler.allowed-failures": 1,
                            # forked workers start in 0.1 s instead of 0.5 s and inherit the
                            # imports (mdivicomtools, the plugin's get_plugin) of this process
                            "distributed.worker.multiprocessing-method": "fork",
                        }
                    )
                )
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=self.jobs,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                )
                client = stack.enter_context(Client(cluster))
            self.address = client.scheduler.address
            futures = {}
            for job in jobs:
                future = client.submit(
                    run_session,
                    job,
                    pure=False,
                    key=f"mdivicom-{job.session}-{os.urandom(4).hex()}",
                )
                futures[future.key] = (future, job)
                report("started", job, None)
            return self._collect(client, futures, report, as_completed)

    @staticmethod
    def _collect(
        client: Any, futures: dict[str, Any], report: Report, as_completed: Any
    ) -> list[SessionResult]:
        results: dict[str, SessionResult] = {}
        interrupted: BaseException | None = None
        iterator = as_completed([future for future, _ in futures.values()])
        while True:
            try:
                future = next(iterator)
            except StopIteration:
                break
            except KeyboardInterrupt as exc:
                if interrupted is not None:
                    break
                interrupted = exc
                waiting = [f for f, _ in futures.values() if f.status == "pending"]
                client.cancel(waiting)
                continue
            _, job = futures[future.key]
            results[job.session] = _future_result(future, job)
            report("finished", job, results[job.session])
        ordered = []
        for _, job in futures.values():
            ordered.append(
                results.get(job.session)
                or SessionResult(
                    session=job.session,
                    status="not_started",
                    error="the batch was interrupted",
                    out=job.out,
                )
            )
        if interrupted is not None:
            raise BatchInterrupted(ordered) from interrupted
        return ordered


def _future_result(future: Any, job: SessionJob) -> SessionResult:
    if future.status == "cancelled":
        return SessionResult(
            session=job.session,
            status="not_started",
            error="the batch was interrupted",
            out=job.out,
        )
    try:
        return future.result()
    except Exception as exc:  # KilledWorker and friends: this session, not the batch
        return SessionResult(
            session=job.session, status="failed", error=f"{type(exc).__name__}: {exc}", out=job.out
        )
