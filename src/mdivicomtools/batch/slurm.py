"""The Slurm executor: sessions on Dask workers that run as Slurm jobs.

dask-jobqueue's SLURMCluster submits `--jobs` worker jobs with `sbatch` (one
Dask worker, one thread per job, started with this process's Python, so the
workers have the same environment); the sessions are Dask tasks on them, as
with `--executor dask`. Everything is checked before the first job is
submitted: `sbatch` on PATH, the controller answering, the partition existing,
the worker job's script accepted by `sbatch --test-only`. Worker jobs that
never bring a worker (refused, or ended first) fail the sessions as lost
instead of leaving the batch waiting. Whatever ends the batch (its end, an
error, Ctrl-C or SIGTERM), every worker job is cancelled and the executor waits
until `squeue` no longer lists them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from typing import Any

import msgspec

from mdivicomtools.batch.feeder import (
    JOBS_ENDED,
    SCHEDULER_HTTP,
    feed_idle_workers,
    no_worker_left,
    quiet_teardown_noise,
    wait_for_a_worker,
)
from mdivicomtools.batch.retry import is_lost
from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SessionJob,
    SessionResult,
    not_started,
)
from mdivicomtools.common.home import expand_home
from mdivicomtools.errors import UsageError
from mdivicomtools.model.layout import BATCHES_DIR
from mdivicomtools.model.options import BatchOptions
from mdivicomtools.settings import (
    SLURM_DEFAULT_CPUS,
    SLURM_DEFAULT_MEM,
    SLURM_DEFAULT_TIME,
    configured_slurm,
)

#: seconds to wait for `squeue` to stop listing the cancelled worker jobs
CANCEL_WAIT_S = 30.0
#: seconds `squeue` may keep failing (a controller restarting or failing over)
#: the smallest --slurm-mem: Slurm's unit of memory
SLURM_MIN_MEM = 1_000_000
#: before a batch with no worker connected stops waiting for its worker jobs
SQUEUE_GRACE_S = 300.0


class SlurmSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The worker jobs' resources: `--slurm-*` options over the config's [slurm] section.

    `interface` is the network interface the Dask scheduler and workers bind
    to; it must be one the compute nodes reach this machine on (`lo` when
    they all run on this machine, e.g. a test cluster).
    """

    partition: str | None = None
    time: str = SLURM_DEFAULT_TIME
    mem: str = SLURM_DEFAULT_MEM
    cpus: int = SLURM_DEFAULT_CPUS
    account: str | None = None
    directives: tuple[str, ...] = ()
    interface: str | None = None


def slurm_settings(batch: BatchOptions) -> SlurmSettings:
    """Merge the command's options over the user config's [slurm] section."""
    section = configured_slurm()
    # the [slurm] keys that are set, as keywords (SlurmDefaults and SlurmSettings share names)
    fields: dict[str, Any] = {
        key: tuple(value) if key == "directives" else value
        for key, value in msgspec.structs.asdict(section).items()
        if value is not None
    }
    configured = SlurmSettings(**fields)
    given = {
        "partition": batch.slurm_partition,
        "time": batch.slurm_time,
        "mem": batch.slurm_mem,
        "cpus": batch.slurm_cpus,
        "account": batch.slurm_account,
    }
    merged = msgspec.structs.replace(
        configured, **{key: value for key, value in given.items() if value is not None}
    )
    if batch.slurm_directives:
        merged = msgspec.structs.replace(
            merged, directives=(*merged.directives, *batch.slurm_directives)
        )
    if merged.cpus < 1:
        source = "--slurm-cpus" if batch.slurm_cpus is not None else "[slurm] cpus"
        raise UsageError(f"{source} must be at least 1, got {merged.cpus}")
    check_memory(merged.mem, "--slurm-mem" if batch.slurm_mem is not None else "[slurm] mem")
    return merged


def check_memory(mem: str, source: str) -> None:
    """Raise UsageError (exit 2) unless dask-jobqueue can read `mem` as a size.

    It reads it when it writes the worker job's script, and a size it cannot
    read ended the batch as an internal error (ValueError) before anything ran;
    so did a size under 1 KiB (`1e3`, `512B`), which its formatter cannot
    write. Slurm counts memory in megabytes, so less than 1MB is refused.
    """
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(mem)
    except (ValueError, TypeError):
        size = None
    if size is None or size <= 0:
        raise UsageError(f"{source} must be a size such as 4GB or 512MB, got {mem!r}")
    if size < SLURM_MIN_MEM:
        raise UsageError(
            f"{source} must be at least 1MB (Slurm counts memory in megabytes), got {mem!r}"
        )


def check_slurm(partition: str | None) -> None:
    """Raise UsageError (exit 2) unless jobs can be submitted: before any is."""
    missing = [name for name in ("sbatch", "squeue", "scancel") if shutil.which(name) is None]
    if missing:
        raise UsageError(
            f"--executor slurm needs the Slurm commands, but {', '.join(missing)} is not on "
            "PATH; run on a Slurm login node (or load its module, e.g. `module load slurm`)"
        )
    ping = _slurm(["scontrol", "ping"])
    if ping.returncode != 0 or "UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        raise UsageError(
            "--executor slurm: the Slurm controller does not answer ("
            + (said[-1] if said else f"scontrol ping exited {ping.returncode}")
            + "); check `sinfo`, or ask the cluster's administrators"
        )
    if partition is not None:
        found = _slurm(["sinfo", "-h", "-o", "%R"]).stdout.split()
        if partition not in found:
            raise UsageError(
                f"--slurm-partition {partition!r} is not a partition of this cluster "
                f"(there are: {', '.join(found) or 'none'}); see `sinfo -s`"
            )


def check_worker_job(script: str) -> None:
    """Raise UsageError (exit 2) if Slurm would refuse the worker job: before any is submitted.

    `sbatch --test-only` validates the script's directives (resources the
    nodes do not have, a time or memory over the partition's limits, an
    unknown account or gres) without submitting; without this a refused
    submission left the batch waiting for a worker that could never come.
    """
    with tempfile.NamedTemporaryFile("w", prefix="mdivicom-worker-", suffix=".sh") as file:
        file.write(script)
        file.flush()
        tried = _slurm(["sbatch", "--test-only", file.name])
    if tried.returncode != 0:
        said = tried.stderr.strip().splitlines() or [f"sbatch exited {tried.returncode}"]
        raise UsageError(
            f"--executor slurm: Slurm refuses the worker job ({said[-1]}); check the "
            "--slurm-* options and the [slurm] section of the config "
            "(`mdivicom config show`)"
        )


def _slurm(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; its answer as text whatever bytes it holds.

    Strict decoding in the locale's encoding made a message holding a byte it
    cannot decode (a Latin-1 account name from sacctmgr, any non-ASCII under the
    C locale with PYTHONUTF8=0) an `internal error (UnicodeDecodeError)` in place
    of the refusal it explained.
    """
    try:
        return subprocess.run(
            command, capture_output=True, text=True, errors="backslashreplace", timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


#: Slurm's end states of a job, and what each means for a worker job
_JOB_ENDS = {
    "TIMEOUT": "its time limit (--slurm-time {time}) ran out",
    "CANCELLED": "it was cancelled (scancel, or the cluster's administrators)",
    "PREEMPTED": "a job of higher priority pre-empted it",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "OUT_OF_MEMORY": "it used more than its memory (--slurm-mem {mem})",
    "DEADLINE": "its deadline passed",
    "FAILED": "",
    "COMPLETED": "",
}
#: seconds to wait for a lost worker's job to end in Slurm (it is COMPLETING a
#: moment after its worker died), so that its end can be named
JOB_END_WAIT_S = 10.0


def ended_job_state(job_id: str, wait_s: float = JOB_END_WAIT_S) -> str | None:
    """The state a Slurm job ended in (`TIMEOUT`, `CANCELLED`, ...); None when it has
    not ended within `wait_s` (its worker died on its own) or Slurm no longer knows it."""
    deadline = time.monotonic() + wait_s
    while True:
        shown = _slurm(["scontrol", "show", "job", "-o", job_id])
        found = re.search(r"\bJobState=(\S+)", shown.stdout)
        if found is not None and found.group(1) in _JOB_ENDS:
            return found.group(1)
        if found is None or time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def explain_lost(
    result: SessionResult, settings: SlurmSettings, wait_s: float = JOB_END_WAIT_S
) -> SessionResult:
    """A try lost with its worker job, with why Slurm ended that job.

    Dask only says the worker died (`KilledWorker: Attempted to run task ...`,
    with a link to its own docs); Slurm knows that the job's time limit ran
    out, that it was cancelled or pre-empted, or that its node failed. A worker
    that died while its job still runs keeps Dask's words.
    """
    if not is_lost(result) or result.slurm_job_id is None:
        return result
    state = ended_job_state(result.slurm_job_id, wait_s)
    if state is None:
        return result
    why = _JOB_ENDS[state].format(time=settings.time, mem=settings.mem)
    result.error = f"WorkerLost: its worker job {result.slurm_job_id} ended {state}" + (
        f": {why}" if why else ""
    )
    return result


class QueueWatch:
    """Why no worker job of a batch can connect any more (None: one still can).

    Asked while no worker is connected: every submission refused by `sbatch`
    (its last line of error) or, once all were accepted, none queued or
    running in `squeue`. A failing `squeue` is waited out for SQUEUE_GRACE_S
    (the controller may be restarting), but not for ever: with no worker
    connected, the batch would wait with nothing to show for it.
    """

    def __init__(
        self,
        job_name: str,
        submissions: Callable[[], list[Any]] = list,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_name = job_name
        self.submissions = submissions
        self.clock = clock
        self.failing_since: float | None = None

    def __call__(self) -> str | None:
        submitted = self.submissions()
        refused = [job.refused for job in submitted if job.refused is not None]
        if refused and len(refused) == len(submitted):
            return f"Slurm refused the worker jobs ({refused[-1]})"
        if any(job.job_id is None and job.refused is None for job in submitted):
            return None  # sbatch has not answered for every job yet
        listed = _slurm(["squeue", "-h", "--name", self.job_name, "-t", "PD,CF,R", "-o", "%i"])
        if listed.returncode == 0:
            self.failing_since = None
            return None if listed.stdout.strip() else JOBS_ENDED
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        if now - self.failing_since < SQUEUE_GRACE_S:
            return None
        detail = (listed.stderr.strip().splitlines() or [f"exit status {listed.returncode}"])[-1]
        return (
            f"squeue failed for {SQUEUE_GRACE_S:.0f} s ({detail}), so no worker job of "
            "this batch could be seen queued or running"
        )


def _noted_job(base: type, submissions: weakref.WeakSet[Any]) -> type:
    """A worker-job class that adds each job to `submissions` and keeps a refusal.

    dask-jobqueue submits jobs in the background and only logs a refused
    `sbatch`; the executor needs to know, and a refused job marked failed lets
    the cluster close (it asserts that no job is left merely "created").
    """
    from distributed.core import Status

    class NotedJob(base):  # type: ignore[misc, valid-type]
        refused: str | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            submissions.add(self)

        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                said = [line for line in str(exc).splitlines() if line.strip()]
                self.refused = said[-1] if said else type(exc).__name__
                self.status = Status.failed
                setattr(exc, _REFUSED, True)
                raise

    return NotedJob


#: marks the exception of a refused submission, which the batch reports itself
_REFUSED = "mdivicom_refused_submission"


class _QuietRefusals(logging.Filter):
    """Drops the event loop's traceback of a refused submission: the sessions say it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and getattr(record.exc_info[1], _REFUSED, False))


def _job_id_here() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or None


def _slurm_job_of(client: Any, worker: str) -> str | None:
    """The Slurm job a worker runs in ($SLURM_JOB_ID there), None if it cannot say."""
    try:
        return client.run(_job_id_here, workers=[worker]).get(worker)
    except Exception:  # the worker left meanwhile: the try is lost without its job id
        return None


def import_jobqueue() -> Any:
    """dask_jobqueue, imported without letting it take over Ctrl-C.

    Importing it (its `runner` module, 0.9) sets a SIGINT handler that calls
    sys.exit(): Ctrl-C would then end the batch with status 0, without a
    summary and without cancelling the worker jobs. The handler is put back.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    except ImportError:
        from mdivicomtools.common.install import install_hint

        raise UsageError(
            f"the slurm executor needs dask-jobqueue: {install_hint('slurm')}"
        ) from None
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


class SlurmExecutor:
    """Sessions as Dask tasks on `jobs` worker jobs submitted to Slurm.

    Worker logs go to `<out>/_batches/slurm/`. A worker that is lost (its job
    cancelled, pre-empted or its node failing) fails its session at once
    rather than moving it to another worker, so the batch records the lost try
    and `--retries` decides whether it runs again.
    """

    name = "slurm"

    def __init__(
        self,
        batch: BatchOptions,
        jobs: int,
        out: str,
        say: Callable[[str], None] = lambda message: None,
    ) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        jobqueue = import_jobqueue()
        self.settings = slurm_settings(batch)
        check_slurm(self.settings.partition)
        self.jobs = jobs
        self.say = say
        self.address: str | None = None
        self.log_directory = expand_home(out).absolute() / BATCHES_DIR / "slurm"
        self.job_name = f"mdivicom-{os.urandom(3).hex()}"
        check_worker_job(
            jobqueue.slurm.SLURMJob(
                scheduler="tcp://127.0.0.1:8786", name="check", **self._job_options(logs=None)
            ).job_script()
        )
        self.job_ids: list[str] = []
        self.partition: str | None = self.settings.partition
        #: seconds from submitting the worker jobs until the first worker was ready
        self.startup_s: float | None = None

    def run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        """Run `jobs` on fresh worker jobs; every worker job is gone when this returns."""
        try:
            return self._run(jobs, report)
        except BatchInterrupted:
            raise
        except KeyboardInterrupt as exc:  # while the cluster started or stopped
            raise BatchInterrupted([not_started(job) for job in jobs]) from exc

    def _run(self, jobs: list[SessionJob], report: Report) -> list[SessionResult]:
        import dask
        from distributed import Client

        jobqueue = import_jobqueue()
        SLURMCluster = jobqueue.SLURMCluster

        self.log_directory.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            stack.callback(self._cancel_all)
            # a lost worker fails its session (recorded by the batch) instead of Dask
            # silently rerunning it on its staging debris elsewhere, so that
            # --retries decides whether it runs again; with `feed_idle_workers` handing
            # out one session per idle worker, a lost worker costs only the one it ran
            stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
            # weak, as the cluster's own set: it asserts at close that every job still
            # alive was closed, and dask-jobqueue's jobs do not say so once scancelled
            submissions: weakref.WeakSet[Any] = weakref.WeakSet()
            quiet_teardown_noise()
            quiet = _QuietRefusals()
            logging.getLogger("tornado.application").addFilter(quiet)
            stack.callback(logging.getLogger("tornado.application").removeFilter, quiet)
            cluster = stack.enter_context(
                SLURMCluster(
                    job_cls=_noted_job(jobqueue.slurm.SLURMJob, submissions),
                    # the nanny (Dask's default) is kept although it costs a Python start-up
                    # per worker job: on scancel it kills the worker process, whose running
                    # session would otherwise hold the output lock for Slurm's KillWait
                    scheduler_options={"dashboard_address": SCHEDULER_HTTP},
                    **self._job_options(logs=str(self.log_directory)),
                )
            )
            client = stack.enter_context(Client(cluster))
            self.address = client.scheduler.address
            watch = QueueWatch(self.job_name, submissions=lambda: list(submissions))
            submitted = time.monotonic()
            cluster.scale(jobs=min(self.jobs, len(jobs)))
            try:
                none_will_come = wait_for_a_worker(
                    client,
                    f"waiting for a worker job to start (`squeue --name {self.job_name}`); "
                    "the sessions run as soon as one does, Ctrl-C stops the batch",
                    self.say,
                    gone=watch,
                )
            finally:
                self._note_jobs(cluster)
            if none_will_come is not None:
                results = [no_worker_left(job, none_will_come) for job in jobs]
                for job, result in zip(jobs, results, strict=True):
                    report("finished", job, result)
                return results
            self.startup_s = round(time.monotonic() - submitted, 3)
            try:
                results = feed_idle_workers(
                    client,
                    jobs,
                    report,
                    no_worker_can_join=watch,
                    job_of=lambda worker: _slurm_job_of(client, worker),
                    explain=lambda result: explain_lost(result, self.settings),
                )
            except BatchInterrupted as exc:
                self._note_results(exc.results)
                raise
            finally:
                self._note_jobs(cluster)
        self._note_results(results)
        return results

    def _job_options(self, logs: str | None) -> dict[str, Any]:
        """The worker jobs' options: for the cluster, and for the script checked beforehand."""
        settings = self.settings
        return {
            "cores": settings.cpus,
            "processes": 1,
            "memory": settings.mem,
            "queue": settings.partition,
            "account": settings.account,
            "walltime": settings.time,
            "job_name": self.job_name,
            "job_extra_directives": list(settings.directives),
            "log_directory": logs,
            "interface": settings.interface,
            "worker_extra_args": ["--nthreads", "1"],
        }

    def _note_jobs(self, cluster: Any) -> None:
        for worker in list(cluster.workers.values()):
            job_id = getattr(worker, "job_id", None)
            if job_id and str(job_id) not in self.job_ids:
                self.job_ids.append(str(job_id))

    def _note_results(self, results: list[SessionResult]) -> None:
        for result in results:
            if result.slurm_job_id and result.slurm_job_id not in self.job_ids:
                self.job_ids.append(result.slurm_job_id)

    def _cancel_all(self) -> None:
        """Cancel every job of this batch that is still queued or running, and wait."""
        _slurm(["scancel", "--name", self.job_name])
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            listed = _slurm(["squeue", "-h", "--name", self.job_name, "-o", "%i"])
            if listed.returncode == 0 and not listed.stdout.strip():
                return
            time.sleep(0.2)
