"""The Dask executor: sessions as tasks on a Dask distributed cluster or a LocalCluster."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mdivicomtools.batch.feeder import (
    SCHEDULER_HTTP,
    SCHEDULER_LOST,
    cancel_reason,
    in_order,
    quiet_scheduler_loss,
    quiet_teardown_noise,
    session_result,
    task_key,
    wait_for_a_worker,
)
from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SchedulerLost,
    SessionJob,
    SessionResult,
    not_started,
    run_session,
    unseen,
)
from mdivicomtools.common.platform import die_with_parent
from mdivicomtools.errors import UsageError
from mdivicomtools.settings import SCHEDULER_ENV


class DaskExecutor:
    """Sessions as tasks on a Dask distributed cluster (or a LocalCluster).

    Each task runs one session in a worker; python plugins run in the worker
    process, container plugins on the engine of the worker's machine. A
    worker that dies mid-session makes Dask retry the task on another worker;
    on the LocalCluster started here that happens once, after which the session
    is failed (KilledWorker). Ctrl-C cancels the sessions not yet started and
    waits for the running ones, which finish and are reported as what they
    were (a second Ctrl-C stops waiting; their runs then show as `abandoned`).
    The LocalCluster's worker processes ignore the terminal's Ctrl-C, which
    reaches every process of the foreground group: only this process decides
    what stops, and a worker never dies mid-session because of it. A
    scheduler of your own with no worker yet is waited for (the batch says so
    after 30 s).
    """

    name = "dask"

    def __init__(
        self,
        scheduler: str | None,
        jobs: int,
        say: Callable[[str], None] = lambda message: None,
    ) -> None:
        if jobs < 1:  # a LocalCluster of no workers left the batch waiting for ever
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        self.scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        if self.scheduler is not None:
            check_address(self.scheduler, "--scheduler" if scheduler else SCHEDULER_ENV)
        self.jobs = jobs
        self.say = say
        self.address: str | None = self.scheduler

    def run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            from mdivicomtools.common.install import install_hint

            raise UsageError(
                f"the dask executor needs dask.distributed: {install_hint('dask')}"
            ) from None
        quiet_teardown_noise()
        with contextlib.ExitStack() as stack:
            stack.enter_context(quiet_scheduler_loss())
            if self.scheduler:
                # how long to try is the site's Dask setting (distributed.comm.timeouts.connect,
                # 30 s unless a dask config file or DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT
                # says otherwise), as for any Dask client: a scheduler on a busy head node
                # may take longer than a fixed guess of ours
                patience = dask.config.get("distributed.comm.timeouts.connect")
                seconds = float(dask.utils.parse_timedelta(patience, default="seconds") or 0)
                try:
                    # first a handshake of our own, bounded as a whole: the client's
                    # connect waits for ever on a port that accepts but does not answer
                    # (a dashboard's, any HTTP server), and misreads bytes that are not
                    # Dask's (a MemoryError asking for exabytes)
                    probe_scheduler(self.scheduler, seconds)
                    client = stack.enter_context(Client(self.scheduler, timeout=seconds))
                except Exception as exc:
                    if isinstance(exc, NotAScheduler):
                        reason = str(exc)
                    else:
                        # distributed's connect timeout carries no text of its own
                        reason = _one_line(str(exc)) or type(exc).__name__
                    raise UsageError(
                        f"cannot reach the Dask scheduler at {self.scheduler}: {reason}; "
                        "check that a Dask scheduler runs at that address, tcp://HOST:PORT "
                        "(--scheduler or MDIVICOM_DASK_SCHEDULER; its port, not its "
                        f"dashboard's); tried for {patience}, Dask's "
                        "distributed.comm.timeouts.connect"
                    ) from None
                try:
                    wait_for_a_worker(
                        client,
                        f"waiting for a worker: the Dask scheduler at {self.scheduler} has "
                        f"none yet; start one (`dask worker {self.scheduler}`), or Ctrl-C",
                        self.say,
                    )
                except KeyboardInterrupt as exc:
                    raise BatchInterrupted([not_started(job) for job in jobs]) from exc
            else:
                stack.enter_context(
                    dask.config.set(
                        {
                            "distributed.scheduler.allowed-failures": 1,
                            # not fork (about 1 s faster to start): the workers are started
                            # from the client's IO-loop thread while other threads run, and a
                            # lock one of them held (a log stream's) stayed locked in a forked
                            # worker for good; spawn is Dask's default, set here against a
                            # site's dask config that says otherwise
                            "distributed.worker.multiprocessing-method": "spawn",
                        }
                    )
                )
                # the worker processes inherit SIGINT, SIGHUP and SIGQUIT ignored (kept
                # across exec)
                with _terminal_signals_ignored():
                    cluster = stack.enter_context(
                        LocalCluster(
                            n_workers=self.jobs,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address=SCHEDULER_HTTP,
                        )
                    )
                client = stack.enter_context(Client(cluster))
                # workers of a batch killed outright (kill -9) must not run on
                client.run(_die_with_batch, os.getpid())
            self.address = client.scheduler.address
            futures = {}
            for job in jobs:
                future = client.submit(
                    run_session,
                    job,
                    pure=False,
                    key=task_key(job),
                )
                futures[future.key] = (future, job)
                report("started", job, None)
            return self._collect(client, futures, report, as_completed)

    def _collect(
        self, client: Any, futures: dict[str, Any], report: Report, as_completed: Any
    ) -> list[SessionResult]:
        results: dict[str, SessionResult] = {}
        interrupted: BaseException | None = None
        cancelled: set[str] = set()
        lost = False
        iterator = as_completed([future for future, _ in futures.values()])
        while True:
            try:
                future = next(iterator)
            except StopIteration:
                break
            except KeyboardInterrupt as exc:
                if interrupted is not None:
                    # a second Ctrl-C stops waiting: the running sessions may still end
                    # (or be cut short) as the workers close; their records will say
                    for _, job in futures.values():
                        if job.session not in results:
                            results[job.session] = unseen(
                                job, "the batch stopped waiting for it (a second Ctrl-C)"
                            )
                    break
                interrupted = exc
                # a future is "pending" while queued and while running alike: ask the
                # workers which sessions they are executing, and cancel only the others
                executing = _executing_keys(client)
                waiting = [
                    f
                    for f, _ in futures.values()
                    if f.status == "pending" and str(f.key) not in executing
                ]
                cancelled.update(str(f.key) for f in waiting)
                client.cancel(waiting)
                continue
            _, job = futures[future.key]
            if str(future.key) in cancelled:
                results[job.session] = not_started(job)
            elif future.status == "cancelled" and cancel_reason(future) == SCHEDULER_LOST:
                # the worker may go on with the session without its scheduler
                lost = True
                results[job.session] = unseen(
                    job, f"the connection to the Dask scheduler at {self.address} was lost"
                )
            else:
                results[job.session] = session_result(future, job)
            report("finished", job, results[job.session])
        ordered = in_order((job for _, job in futures.values()), results)
        if interrupted is not None:
            raise BatchInterrupted(ordered) from interrupted
        if lost:
            raise SchedulerLost(str(self.address), ordered)
        return ordered


#: what --scheduler accepts: a Dask TCP (or TLS) address; without a scheme Dask means tcp
_ADDRESS = re.compile(
    r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def check_address(address: str, source: str) -> None:
    """Raise UsageError (exit 2) unless `address` is tcp://HOST:PORT (or tls://, or HOST:PORT).

    Checked before anything runs: Dask's own parsing of `http://...` or a bare
    host fails deep in the client with an error that names neither the address
    nor what it should be.
    """
    found = _ADDRESS.fullmatch(address)
    problem = None
    if found is None:
        problem = "not an address"
    elif (found["scheme"] or "tcp").lower() not in ("tcp", "tls"):
        problem = f"{found['scheme']}:// is not a Dask scheduler's protocol"
    elif found["port"] is None:
        problem = "no port"
    elif not 0 < int(found["port"]) < 65536:
        problem = f"port {found['port']} is out of range"
    if problem is not None:
        raise UsageError(
            f"{source} {address!r} is not a Dask scheduler address ({problem}); "
            "expected tcp://HOST:PORT, e.g. tcp://scheduler.lab:8786"
        )


class NotAScheduler(Exception):
    """What answered at the address is not a Dask scheduler."""


async def _handshake(address: str, seconds: float) -> None:
    from distributed.comm import connect

    comm = await connect(address, timeout=seconds)
    try:
        await comm.write({"op": "identity"})
        reply = await comm.read()
    finally:
        comm.abort()
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise NotAScheduler(
            f"a Dask {kind.lower()} answered, not a scheduler"
            if isinstance(kind, str)
            else "what answers there is not a Dask scheduler"
        )


def probe_scheduler(address: str, seconds: float) -> None:
    """Connect to `address` and ask who it is, all within `seconds` (and a little).

    In a thread of its own with its own event loop, so that it also works
    where the calling thread runs one (a notebook); raises what the connection
    raised, TimeoutError, or NotAScheduler.
    """

    async def bounded() -> None:
        try:
            await asyncio.wait_for(_handshake(address, seconds), seconds + 1.0)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"it accepts connections but does not answer as a Dask scheduler within "
                f"{seconds:g} s"
            ) from None
        except (OSError, TimeoutError, NotAScheduler):
            raise
        except Exception as exc:  # bytes that are not Dask's, misread
            raise NotAScheduler(
                f"what answers there does not speak Dask ({type(exc).__name__})"
            ) from exc

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mdivicom-probe") as pool:
        pool.submit(asyncio.run, bounded()).result()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _die_with_batch(batch_pid: int) -> None:
    """In a LocalCluster worker: SIGKILL when the batch process dies.

    Not SIGTERM: the worker's handler ends only its main thread, and the
    session's thread would go on running; the cut-short run's record shows as
    `abandoned` instead.
    """
    die_with_parent(signal.SIGKILL)
    if os.getppid() != batch_pid:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def _terminal_signals_ignored() -> Iterator[None]:
    """What a terminal sends every process of its group, Ctrl-C (SIGINT), Ctrl-\\
    (SIGQUIT) and, when it closes, SIGHUP, ignored by the processes started in the
    block: the batch
    process takes them and stops the batch, and the workers finish their sessions.
    A worker (and multiprocessing's resource tracker) killed by the terminal's
    SIGHUP lost its session, and the tracker's successor printed tracebacks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _executing(dask_worker: Any) -> list[str]:
    return [str(task.key) for task in dask_worker.state.executing]


def _executing_keys(client: Any) -> set[str]:
    """Keys of the tasks that workers are executing right now (empty if unknown)."""
    try:
        found = client.run(_executing)
    except Exception:  # a worker gone or an old distributed: cancel as before
        return set()
    return {key for keys in found.values() for key in keys}
