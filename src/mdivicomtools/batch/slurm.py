"""The Slurm executor: sessions on Dask workers that run as Slurm jobs.

dask-jobqueue's SLURMCluster submits `--jobs` worker jobs with `sbatch` (one
Dask worker, one thread per job, started with this process's Python, so the
workers have the same environment); the sessions are Dask tasks on them, as
with `--executor dask`. Everything is checked before the first job is
submitted: `sbatch` on PATH, the controller answering, the partition existing.
Whatever ends the batch (its end, an error, Ctrl-C or SIGTERM), every worker
job is cancelled and the executor waits until `squeue` no longer lists them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.batch.feeder import feed_idle_workers
from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SessionJob,
    SessionResult,
    not_started,
)
from mdivicomtools.errors import UsageError
from mdivicomtools.model.layout import BATCHES_DIR
from mdivicomtools.model.options import BatchOptions
from mdivicomtools.settings import configured_slurm

#: seconds to wait for `squeue` to stop listing the cancelled worker jobs
CANCEL_WAIT_S = 30.0


class SlurmSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The worker jobs' resources: `--slurm-*` options over the config's [slurm] section.

    `interface` is the network interface the Dask scheduler and workers bind
    to; it must be one the compute nodes reach this machine on (`lo` when
    they all run on this machine, e.g. a test cluster).
    """

    partition: str | None = None
    time: str = "01:00:00"
    mem: str = "2GB"
    cpus: int = 1
    account: str | None = None
    directives: tuple[str, ...] = ()
    interface: str | None = None


def slurm_settings(batch: BatchOptions) -> SlurmSettings:
    """Merge the command's options over the user config's [slurm] section."""
    section = configured_slurm()
    configured = SlurmSettings(
        **{
            key: tuple(value) if key == "directives" else value
            for key, value in msgspec.structs.asdict(section).items()
            if value is not None
        }
    )
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
        raise UsageError(f"--slurm-cpus must be at least 1, got {merged.cpus}")
    return merged


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


def _slurm(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


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
        raise UsageError(
            "the slurm executor needs dask-jobqueue: pip install 'mdivicomtools[slurm]'"
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

    def __init__(self, batch: BatchOptions, jobs: int, out: str) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {jobs}")
        import_jobqueue()
        self.settings = slurm_settings(batch)
        check_slurm(self.settings.partition)
        self.jobs = jobs
        self.address: str | None = None
        self.log_directory = Path(out).expanduser().absolute() / BATCHES_DIR / "slurm"
        self.job_name = f"mdivicom-{os.urandom(3).hex()}"
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

        SLURMCluster = import_jobqueue().SLURMCluster

        self.log_directory.mkdir(parents=True, exist_ok=True)
        settings = self.settings
        with contextlib.ExitStack() as stack:
            stack.callback(self._cancel_all)
            # a lost worker fails its session (recorded by the batch) instead of Dask
            # silently rerunning it on its staging debris elsewhere, so that
            # --retries decides whether it runs again; with `feed_idle_workers` handing
            # out one session per idle worker, a lost worker costs only the one it ran
            stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": 0}))
            cluster = stack.enter_context(
                SLURMCluster(
                    cores=settings.cpus,
                    processes=1,
                    memory=settings.mem,
                    queue=settings.partition,
                    account=settings.account,
                    walltime=settings.time,
                    job_name=self.job_name,
                    job_extra_directives=list(settings.directives),
                    log_directory=str(self.log_directory),
                    interface=settings.interface,
                    worker_extra_args=["--nthreads", "1"],
                    # the nanny (Dask's default) is kept although it costs a Python start-up
                    # per worker job: on scancel it kills the worker process, whose running
                    # session would otherwise hold the output lock for Slurm's KillWait
                    scheduler_options={"dashboard_address": None},
                )
            )
            client = stack.enter_context(Client(cluster))
            self.address = client.scheduler.address
            submitted = time.monotonic()
            cluster.scale(jobs=min(self.jobs, len(jobs)))
            try:
                client.wait_for_workers(1)
            finally:
                self._note_jobs(cluster)
            self.startup_s = round(time.monotonic() - submitted, 3)
            try:
                results = feed_idle_workers(
                    client, jobs, report, workers_may_join=self._jobs_may_start
                )
            except BatchInterrupted as exc:
                self._note_results(exc.results)
                raise
            finally:
                self._note_jobs(cluster)
        self._note_results(results)
        return results

    def _note_jobs(self, cluster: Any) -> None:
        for worker in list(cluster.workers.values()):
            job_id = getattr(worker, "job_id", None)
            if job_id and str(job_id) not in self.job_ids:
                self.job_ids.append(str(job_id))

    def _note_results(self, results: list[SessionResult]) -> None:
        for result in results:
            if result.slurm_job_id and result.slurm_job_id not in self.job_ids:
                self.job_ids.append(result.slurm_job_id)

    def _jobs_may_start(self) -> bool:
        """A worker job of this batch is queued or running, so a worker may still connect."""
        listed = _slurm(["squeue", "-h", "--name", self.job_name, "-t", "PD,CF,R", "-o", "%i"])
        return listed.returncode != 0 or bool(listed.stdout.strip())

    def _cancel_all(self) -> None:
        """Cancel every job of this batch that is still queued or running, and wait."""
        _slurm(["scancel", "--name", self.job_name])
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            listed = _slurm(["squeue", "-h", "--name", self.job_name, "-o", "%i"])
            if listed.returncode == 0 and not listed.stdout.strip():
                return
            time.sleep(0.2)
