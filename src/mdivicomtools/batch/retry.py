"""Retries and lost workers: every try that started a run ends with a record, and no debris.

A worker that is lost mid-session (a node failure, `scancel`, pre-emption, the
OOM killer) cannot write the record of the run it was doing, and leaves that
run's staging folder (and perhaps its log) behind. The submitting process knows
which session the worker had, so it writes the record for it here: the run is
recorded as failed (or interrupted, when the batch was stopped) with the
reason, and its staging is removed, before the session is tried again
(`--retries`) on a clean folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import msgspec

from mdivicomtools.batch.session import (
    UNSEEN,
    BatchInterrupted,
    EarlierAttempt,
    SchedulerLost,
    SessionJob,
    SessionResult,
    SessionStatus,
    is_unseen,
    not_started,
)
from mdivicomtools.common.timefmt import iso, utc_now
from mdivicomtools.model.layout import STAGING_DIR, WORK_DIR, runs_dir, staging_root
from mdivicomtools.model.run import (
    UNFINISHED,
    BackendInfo,
    ErrorInfo,
    HostInfo,
    PluginInfo,
    RunRecord,
    Status,
)
from mdivicomtools.records.store import read_record, record_paths, runner_gone, write_record
from mdivicomtools.runner.config import config_sha256, redact
from mdivicomtools.runner.staging import OutputLocked, discard_staging, plugin_lock, roll_back

#: seconds to wait for a run whose end the executor did not see (its scheduler lost)
#: and that is still running: a worker without a scheduler goes on with its session
UNSEEN_WAIT_S = 10.0
#: seconds between looks at such a run's record
UNSEEN_POLL_S = 0.2

#: how executors name a session whose worker went away (see local.py, dask_cluster.py)
LOST_PREFIXES = (
    "WorkerDied",
    "KilledWorker",
    "CommClosedError",
    "CancelledError",
    "FutureCancelledError",
    "WorkerLost",
)


def is_lost(result: SessionResult) -> bool:
    """The session's worker went away: no run record came back."""
    return (
        result.run_id is None
        and result.status == "failed"
        and (result.error or "").startswith(LOST_PREFIXES)
    )


def orphan_runs(run_out_dir: Path, plugin_id: str) -> list[str]:
    """Run ids of `plugin_id` with a staging folder whose record never got past
    `running` (or was never written): runs whose process went away. Called under
    the plugin's lock, so no live run of the plugin can be among them; another
    plugin's runs in the same session folder (a single run chained onto the
    session) are not the batch's to judge, and are left alone."""
    staging = run_out_dir / STAGING_DIR
    if not staging.is_dir():
        return []
    records = runs_dir(run_out_dir)
    found = []
    for entry in sorted(staging.iterdir()):
        if not entry.is_dir():
            continue
        path = records / f"{entry.name}.json"
        try:
            record = read_record(path)
            if record.plugin.id != plugin_id or record.status not in UNFINISHED:
                continue
        except FileNotFoundError:
            if not (entry / plugin_id).is_dir():
                continue
        except (OSError, msgspec.DecodeError):
            continue
        found.append(entry.name)
    return found


class LostTry(msgspec.Struct, kw_only=True, frozen=True):
    """What the batch knows of a lost try beyond its job: written into its record."""

    #: the backend chosen for the batch (the worker's own choice is lost with it)
    backend: str | None = None
    #: the Slurm job the try ran in, if the executor knew it
    slurm_job_id: str | None = None


class LostRun(msgspec.Struct, kw_only=True, frozen=True):
    """The record `record_lost` wrote: its run id, and how long the run went on."""

    run_id: str
    duration_s: float


def record_lost(
    job: SessionJob,
    plugin: PluginInfo,
    *,
    status: Status,
    reason: str,
    known: LostTry | None = None,
) -> LostRun | None:
    """Write the record of `job`'s lost try and remove its staging; the run written.

    None when the try left nothing behind (it was lost before its run started:
    there was no run to record), or when the run still holds its lock (its
    process is alive somewhere and will write its own record).
    """
    run_out_dir = Path(job.options.out)
    written: LostRun | None = None
    try:
        with plugin_lock(run_out_dir, plugin.id):
            for run_id in orphan_runs(run_out_dir, plugin.id):
                started = _started_at(run_out_dir / STAGING_DIR / run_id)
                try:  # a promotion it had not committed: the previous output goes back
                    roll_back(run_out_dir, run_id)
                    rolled_back = True
                except OSError:  # the previous output is still in the staging: kept
                    rolled_back = False
                record = _write(job, plugin, run_id, status, reason, started, known or LostTry())
                if rolled_back:
                    discard_staging(run_out_dir, run_id)
                written = LostRun(run_id=run_id, duration_s=record.duration_s)
            return written
    except OutputLocked:
        return None


def _started_at(staging: Path) -> datetime:
    with contextlib.suppress(OSError):
        return datetime.fromtimestamp(staging.stat().st_mtime, tz=timezone.utc)
    return utc_now()


def _write(
    job: SessionJob,
    plugin: PluginInfo,
    run_id: str,
    status: Status,
    reason: str,
    started: datetime,
    known: LostTry,
) -> RunRecord:
    run_out_dir = Path(job.options.out)
    config = job.options.config if isinstance(job.options.config, dict) else {}
    log = runs_dir(run_out_dir) / f"{run_id}.log"
    finished = utc_now()
    record = RunRecord(
        run_id=run_id,
        status=status,
        plugin=plugin,
        backend=BackendInfo(name=job.options.backend or known.backend or "unrecorded"),
        dataset_dir=job.options.dataset,
        out_dir=str(run_out_dir / plugin.id),
        run_out_dir=str(run_out_dir),
        work_dir=job.options.work or str(staging_root(run_out_dir, run_id) / WORK_DIR),
        config=redact(config),
        config_sha256=config_sha256(config),
        started_at=iso(started),
        finished_at=iso(finished),
        duration_s=round(max((finished - started).total_seconds(), 0.0), 3),
        exit_code=None,
        error=ErrorInfo(type="WorkerLost", message=reason),
        outputs=[],
        resultbundles=[],
        host=HostInfo(slurm_job_id=known.slurm_job_id),
        extensions={},
        log=str(log.relative_to(run_out_dir)) if log.exists() else None,
        warnings=["recorded by the batch after the worker running this session was lost"],
        attempt=job.attempt,
        timeout_s=job.options.timeout,
        isolate=job.options.isolate,
    )
    write_record(runs_dir(run_out_dir) / f"{run_id}.json", record)
    return record


def run_ids(run_out_dir: Path) -> frozenset[str]:
    """The ids of the runs recorded in `run_out_dir` now: taken before a round, so that
    the records a try of the round writes are told from every earlier one."""
    return frozenset(path.stem for path in record_paths(run_out_dir))


def this_try(job: SessionJob, plugin: PluginInfo, before: frozenset[str]) -> RunRecord | None:
    """The record of `job`'s try: of this plugin and try number, and not there before
    the round began (the newest, if Dask ran the task twice)."""
    found = None
    for path in record_paths(Path(job.options.out)):
        if path.stem in before:
            continue
        try:
            record = read_record(path)
        except (OSError, msgspec.DecodeError):
            continue
        if record.plugin.id == plugin.id and record.attempt == job.attempt:
            found = record
    return found


_FINISHED: dict[str, SessionStatus] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "interrupted": "interrupted",
    "timed_out": "timed_out",
    "dry_run": "dry_run",
}


def from_records(
    job: SessionJob,
    result: SessionResult,
    plugin: PluginInfo,
    before: frozenset[str],
    *,
    interrupted: bool,
    backend: str | None = None,
) -> SessionResult:
    """The outcome of a try the executor did not see end, as its records tell it.

    A Dask worker that lost its scheduler goes on with its session and records
    it, and a session that finished while a second Ctrl-C was closing the
    workers did so too: reporting either as `not_started` (what their futures
    say) denied a run that happened. A run still going is waited for up to
    UNSEEN_WAIT_S; one whose process is gone is recorded here (`record_lost`);
    a try with no record never started.
    """
    why = (result.error or "").removeprefix(f"{UNSEEN}: ")
    run_out_dir = Path(job.options.out)
    deadline = time.monotonic() + UNSEEN_WAIT_S
    while True:
        record = this_try(job, plugin, before)
        if record is None or (record.status in UNFINISHED and runner_gone(record, run_out_dir)):
            status: Literal["interrupted", "failed"] = "interrupted" if interrupted else "failed"
            lost = record_lost(
                job,
                plugin,
                status=status,
                reason=why,
                known=LostTry(backend=backend, slurm_job_id=result.slurm_job_id),
            )
            if lost is None:
                return not_started(job, why)
            return SessionResult(
                session=job.session,
                status=status,
                run_id=lost.run_id,
                duration_s=lost.duration_s,
                slurm_job_id=result.slurm_job_id,
                error=f"WorkerLost: {why}",
                out=job.out,
                reason=job.reason,
                attempt=job.attempt,
            )
        finished = _FINISHED.get(record.status)
        if finished is not None:
            error = f"{record.error.type}: {record.error.message}" if record.error else None
            return SessionResult(
                session=job.session,
                status=finished,
                run_id=record.run_id,
                duration_s=record.duration_s,
                error=error,
                out=job.out,
                reason=job.reason,
                attempt=job.attempt,
                slurm_job_id=record.host.slurm_job_id,
                warnings=list(record.warnings),
            )
        if time.monotonic() >= deadline:
            return SessionResult(
                session=job.session,
                status="failed",
                run_id=record.run_id,
                error=(
                    f"{why}; its run {record.run_id} was still running when the batch ended "
                    "(see `mdivicom runs list`)"
                ),
                out=job.out,
                reason=job.reason,
                attempt=job.attempt,
            )
        time.sleep(UNSEEN_POLL_S)


def settle(
    job: SessionJob,
    result: SessionResult,
    plugin: PluginInfo,
    *,
    interrupted: bool,
    before: frozenset[str] = frozenset(),
    backend: str | None = None,
) -> SessionResult:
    """Give a lost or never-finished try its record; the result to keep for it.

    `before`: the session's run ids before the try's round began (`run_ids`);
    `backend`: the one chosen for the batch, for the records written here.
    """
    result.attempt = job.attempt
    settled = _settle(job, result, plugin, interrupted=interrupted, before=before, backend=backend)
    if settled.status == "not_started":
        settled.attempt = job.attempt - 1  # a try that never started is no try
    return settled


def _settle(
    job: SessionJob,
    result: SessionResult,
    plugin: PluginInfo,
    *,
    interrupted: bool,
    before: frozenset[str],
    backend: str | None,
) -> SessionResult:
    if is_unseen(result):
        return from_records(job, result, plugin, before, interrupted=interrupted, backend=backend)
    known = LostTry(backend=backend, slurm_job_id=result.slurm_job_id)
    if is_lost(result):
        lost = record_lost(
            job,
            plugin,
            status="interrupted" if interrupted else "failed",
            reason=result.error or "the worker was lost",
            known=known,
        )
        if lost is None:
            result.error = f"{result.error} (lost before its run started: no run record)"
        else:
            result.run_id, result.duration_s = lost.run_id, lost.duration_s
    elif result.status == "not_started":
        # it may have been running when the batch was stopped and its worker ended
        ended = "the batch was stopped while this session ran, and its worker ended"
        lost = record_lost(job, plugin, status="interrupted", reason=ended, known=known)
        if lost is not None:  # the summary says what its record says
            result.status, result.run_id = "interrupted", lost.run_id
            result.duration_s, result.error = lost.duration_s, f"WorkerLost: {ended}"
    elif interrupted:
        # a stopped batch's session whose run never recorded its end (Ctrl-C on a
        # terminal reaches a local worker twice, and the second can cut the run's
        # last write short): interrupted, as the session is; recorded `failed` by a
        # scheduler's rerun below, it contradicted the summary (a rare CI failure)
        record_lost(
            job,
            plugin,
            status="interrupted",
            reason="the batch was stopped while this session ran, before its run recorded its end",
            known=LostTry(backend=backend),
        )
    else:
        # a scheduler that reruns a lost worker's task itself (Dask's allowed-failures)
        # leaves the lost try's staging behind even when the session then succeeded
        record_lost(
            job,
            plugin,
            status="failed",
            reason="the worker running this try was lost; the scheduler ran the session again",
            known=LostTry(backend=backend),
        )
    return result


#: settles one try: (job, result, the batch was stopped, the session's run ids before
#: the try's round began) -> the result to keep
Settle = Callable[[SessionJob, SessionResult, bool, frozenset[str]], SessionResult]


def retry_job(job: SessionJob) -> SessionJob:
    """The same session, one try later."""
    return SessionJob(
        session=job.session,
        ref=job.ref,
        options=job.options.with_changes(attempt=job.attempt + 1),
        command_line=job.command_line,
    )


def will_retry(job: SessionJob, result: SessionResult, retries: int) -> bool:
    """Whether `result`, the end of `job`'s try, is followed by another try.

    The one rule for both the rounds below and the progress a batch reports as
    its sessions end (`run_batch`'s "retrying"), so the count of finished
    sessions shown never runs ahead of what the batch does. A try that timed out
    or was interrupted is not retried.
    """
    return result.status == "failed" and job.attempt <= retries


def run_with_retries(
    jobs: list[SessionJob],
    retries: int,
    run_round: Callable[[list[SessionJob]], list[SessionResult]],
    settle_one: Settle,
) -> list[SessionResult]:
    """Run `jobs`, then rerun the failed ones up to `retries` times, in rounds.

    Each round is a complete executor run, so the retries of a lost worker get
    fresh workers. The result of a session is its last try's, with the tries
    before it in `earlier`. An interrupted round ends the batch: the sessions
    it stopped are settled as interrupted and BatchInterrupted carries them all;
    a round that lost its Dask scheduler ends it too (SchedulerLost), as a
    failure. `settle_one` gets each session's run ids from before its round.
    """
    final: dict[str, SessionResult] = {}
    history: dict[str, list[EarlierAttempt]] = {}
    by_session = {job.session: job for job in jobs}
    todo = jobs
    for _round in range(retries + 1):
        before = {job.session: run_ids(Path(job.out)) for job in todo}
        try:
            results = run_round(todo)
        except (BatchInterrupted, SchedulerLost) as exc:
            stopped = isinstance(exc, BatchInterrupted)
            for result in exc.results:
                job = by_session[result.session]
                result = settle_one(job, result, stopped, before[result.session])
                result.earlier = history.get(result.session, [])
                final[result.session] = result
            settled = [final[j.session] for j in jobs if j.session in final]
            if isinstance(exc, SchedulerLost):
                raise SchedulerLost(exc.address, settled) from exc
            raise BatchInterrupted(settled) from exc
        again: list[SessionJob] = []
        for result in results:
            job = by_session[result.session]
            result = settle_one(job, result, False, before[result.session])
            result.earlier = history.get(result.session, [])
            final[result.session] = result
            if will_retry(job, result, retries):
                history[result.session] = [*result.earlier, _earlier(result)]
                again.append(retry_job(job))
        if not again:
            break
        for job in again:
            by_session[job.session] = job
        todo = again
    return [final[job.session] for job in jobs if job.session in final]


def _earlier(result: SessionResult) -> EarlierAttempt:
    return EarlierAttempt(
        attempt=result.attempt,
        status=result.status,
        run_id=result.run_id,
        duration_s=result.duration_s,
        error=result.error,
        slurm_job_id=result.slurm_job_id,
    )
