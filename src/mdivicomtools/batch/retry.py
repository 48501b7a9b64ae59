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
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from mdivicomtools.batch.session import (
    BatchInterrupted,
    EarlierAttempt,
    SessionJob,
    SessionResult,
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
from mdivicomtools.records.store import read_record, write_record
from mdivicomtools.runner.config import config_sha256, redact
from mdivicomtools.runner.staging import OutputLocked, discard_staging, plugin_lock

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


def orphan_runs(run_out_dir: Path) -> list[str]:
    """Run ids with a staging folder whose record never got past `running` (or was
    never written): runs whose process went away. Called under the plugin's
    lock, so no live run of the plugin can be among them."""
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
            if read_record(path).status not in UNFINISHED:
                continue
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError):
            continue
        found.append(entry.name)
    return found


def record_lost(job: SessionJob, plugin: PluginInfo, *, status: Status, reason: str) -> str | None:
    """Write the record of `job`'s lost try and remove its staging; its run id.

    None when the try left nothing behind (it was lost before its run started:
    there was no run to record), or when the run still holds its lock (its
    process is alive somewhere and will write its own record).
    """
    run_out_dir = Path(job.options.out)
    try:
        with plugin_lock(run_out_dir, plugin.id):
            orphans = orphan_runs(run_out_dir)
            for run_id in orphans:
                started = _started_at(run_out_dir / STAGING_DIR / run_id)
                _write(job, plugin, run_id, status, reason, started)
                discard_staging(run_out_dir, run_id)
            return orphans[-1] if orphans else None
    except OutputLocked:
        return None


def _started_at(staging: Path) -> datetime:
    with contextlib.suppress(OSError):
        return datetime.fromtimestamp(staging.stat().st_mtime, tz=timezone.utc)
    return utc_now()


def _write(
    job: SessionJob, plugin: PluginInfo, run_id: str, status: Status, reason: str, started: datetime
) -> None:
    run_out_dir = Path(job.options.out)
    config = job.options.config if isinstance(job.options.config, dict) else {}
    log = runs_dir(run_out_dir) / f"{run_id}.log"
    finished = utc_now()
    record = RunRecord(
        run_id=run_id,
        status=status,
        plugin=plugin,
        backend=BackendInfo(name=job.options.backend or "unrecorded"),
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
        host=HostInfo(),
        extensions={},
        log=str(log.relative_to(run_out_dir)) if log.exists() else None,
        warnings=["recorded by the batch after the worker running this session was lost"],
        attempt=job.attempt,
        timeout_s=job.options.timeout,
        isolate=job.options.isolate,
    )
    write_record(runs_dir(run_out_dir) / f"{run_id}.json", record)


def settle(
    job: SessionJob, result: SessionResult, plugin: PluginInfo, *, interrupted: bool
) -> SessionResult:
    """Give a lost or never-finished try its record; the result to keep for it."""
    result.attempt = job.attempt
    if is_lost(result):
        run_id = record_lost(
            job,
            plugin,
            status="interrupted" if interrupted else "failed",
            reason=result.error or "the worker was lost",
        )
        result.run_id = run_id
        if run_id is None:
            result.error = f"{result.error} (lost before its run started: no run record)"
    elif result.status == "not_started":
        # it may have been running when the batch was stopped and its worker ended
        run_id = record_lost(
            job,
            plugin,
            status="interrupted",
            reason="the batch was stopped while this session ran, and its worker ended",
        )
        if run_id is not None:
            result.status, result.run_id = "interrupted", run_id
    else:
        # a scheduler that reruns a lost worker's task itself (Dask's allowed-failures)
        # leaves the lost try's staging behind even when the session then succeeded
        record_lost(
            job,
            plugin,
            status="failed",
            reason="the worker running this try was lost; the scheduler ran the session again",
        )
    return result


def retry_job(job: SessionJob) -> SessionJob:
    """The same session, one try later."""
    return SessionJob(
        session=job.session,
        ref=job.ref,
        options=job.options.with_changes(attempt=job.attempt + 1),
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
    settle_one: Callable[[SessionJob, SessionResult, bool], SessionResult],
) -> list[SessionResult]:
    """Run `jobs`, then rerun the failed ones up to `retries` times, in rounds.

    Each round is a complete executor run, so the retries of a lost worker get
    fresh workers. The result of a session is its last try's, with the tries
    before it in `earlier`. An interrupted round ends the batch: the sessions
    it stopped are settled as interrupted and BatchInterrupted carries them all.
    """
    final: dict[str, SessionResult] = {}
    history: dict[str, list[EarlierAttempt]] = {}
    by_session = {job.session: job for job in jobs}
    todo = jobs
    for _round in range(retries + 1):
        try:
            results = run_round(todo)
        except BatchInterrupted as exc:
            for result in exc.results:
                job = by_session[result.session]
                result = settle_one(job, result, True)
                result.earlier = history.get(result.session, [])
                final[result.session] = result
            raise BatchInterrupted([final[j.session] for j in jobs if j.session in final]) from exc
        again: list[SessionJob] = []
        for result in results:
            job = by_session[result.session]
            result = settle_one(job, result, False)
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
