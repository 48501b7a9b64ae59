"""Many sessions at once: plan, execute on an executor, summarise.

`run_batch` fans one plugin out over `<dataset>/sessions/<glob>/`: each
session is a complete single run with `<out>/<session>/` as its run root.
`plan` validates everything before the first session starts (problems common
to all sessions are reported once) and skips sessions that already succeeded
(`resume`); an executor (`local`: forked workers, `dask_cluster`: Dask,
`slurm`: Dask workers as Slurm jobs) runs the `session` jobs, `retry` records
the tries whose worker was lost and reruns failed sessions (`--retries`);
`summary` writes `<out>/_batches/<batch_id>.json` whatever happens.

May import `runner` and everything below it; only `cli` imports `batch`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mdivicomtools.batch.dask_cluster import DaskExecutor
from mdivicomtools.batch.local import LocalExecutor
from mdivicomtools.batch.plan import BatchValidationFailed, plan_batch
from mdivicomtools.batch.retry import Settle, run_with_retries, settle, will_retry
from mdivicomtools.batch.session import (
    BatchInterrupted,
    Report,
    SchedulerLost,
    SessionJob,
    SessionResult,
    is_unseen,
)
from mdivicomtools.batch.slurm import SlurmExecutor
from mdivicomtools.batch.summary import (
    BatchRun,
    BatchSummary,
    BatchSummaryInterrupted,
    ProgressFile,
    prepare_summary_folder,
    running_summary,
    summarise,
)
from mdivicomtools.common.signals import interrupt_name
from mdivicomtools.common.timefmt import stamp_id, utc_now
from mdivicomtools.errors import UsageError
from mdivicomtools.model.options import EXECUTORS, BatchOptions, RunOptions, given_call
from mdivicomtools.model.run import PluginInfo
from mdivicomtools.runner import while_shown

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "BatchSummaryInterrupted",
    "BatchValidationFailed",
    "SessionJob",
    "SessionResult",
    "default_jobs",
    "run_batch",
]

_BATCH_FIELDS = frozenset(BatchOptions.__struct_fields__)


def default_jobs() -> int:
    """The CPUs this process may use (respecting affinity, e.g. a Slurm allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


def _executor(
    batch: BatchOptions, jobs: int, out: str, say: Callable[[str], None]
) -> LocalExecutor | DaskExecutor | SlurmExecutor:
    if batch.executor not in EXECUTORS:
        raise UsageError(
            f"--executor must be one of {', '.join(EXECUTORS)}, got {batch.executor!r}"
        )
    if batch.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {batch.retries}")
    if batch.executor == "local":
        return LocalExecutor(jobs)
    if batch.executor == "slurm":
        return SlurmExecutor(batch, jobs, out, say)
    return DaskExecutor(batch.scheduler, jobs, say)


def _reporting_retries(
    on_event: Report | None, retries: int, ended: Callable[[SessionResult], None]
) -> Report:
    """`on_event` with each try that will be retried reported as "retrying", not "finished".

    Executors report every try's end as "finished"; only the retry rule knows
    which end is a session's last, and a view counting "finished" must count
    sessions, not tries (it showed `(4/3)` with a session retried). `ended`
    gets each session's last result (the progress file).
    """

    def report(kind: str, job: SessionJob, result: SessionResult | None) -> None:
        if result is not None and is_unseen(result):
            return  # reported once its records tell what it was (`_settle_reporting`)
        if kind == "finished" and result is not None and will_retry(job, result, retries):
            kind = "retrying"
        if kind == "finished" and result is not None:
            ended(result)
        if on_event is not None:
            on_event(kind, job, result)

    return report


def _settle_reporting(plugin: PluginInfo, backend: str | None, report: Report) -> Settle:
    """`settle` for run_with_retries, which reports the end of a try the executor did
    not see (`is_unseen`) once its records have told what it was."""

    def settle_one(
        job: SessionJob, result: SessionResult, stopped: bool, before: frozenset[str]
    ) -> SessionResult:
        was_unseen = is_unseen(result)
        settled = settle(job, result, plugin, interrupted=stopped, before=before, backend=backend)
        if was_unseen:
            report("finished", job, settled)
        return settled

    return settle_one


def run_batch(
    ref: str,
    options: RunOptions | None = None,
    batch: BatchOptions | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_event: Report | None = None,
    **fields: Any,
) -> BatchSummary:
    """Run `ref` on every matching session; returns (and writes) the batch summary.

    Pass RunOptions and BatchOptions, or their fields as keywords
    (`dataset=..., out=..., sessions=..., jobs=...`). Raises
    BatchValidationFailed (exit 2) before anything runs,
    BatchSummaryInterrupted after writing the summary of an interrupted batch,
    and RecordNotWritten (exit 74) when --out, or at the end the summary, cannot
    be written.
    `on_start` gets the number of sessions about to run; `on_event` gets
    ("started", job, None) as each try of a session starts, ("retrying", job,
    result) as a try ends that another try of the session follows (`retries`),
    and ("finished", job, result) once per session, as its last try ends.
    """
    options = given_call("run_batch", ref, options, RunOptions, "dataset=..., out=...")
    batch = given_call("run_batch", ref, batch, BatchOptions, "sessions=..., jobs=...")
    batch_fields = {k: fields.pop(k) for k in list(fields) if k in _BATCH_FIELDS}
    if options is None:
        options = RunOptions.build(**fields)
    elif fields:
        options = options.with_changes(**fields)
    if batch is None:
        batch = BatchOptions(**batch_fields)
    elif batch_fields:
        batch = BatchOptions(**{**{f: getattr(batch, f) for f in _BATCH_FIELDS}, **batch_fields})
    say = while_shown(progress)  # a reader gone must not cost the batch its summary
    jobs = batch.jobs if batch.jobs is not None else default_jobs()
    executor = _executor(batch, jobs, options.out, say)

    plan = plan_batch(ref, options, batch)
    prepare_summary_folder(plan.out_dir)
    if plan.skipped:
        say(
            f"resume: skipping {len(plan.skipped)} session(s) whose latest run of "
            f"{plan.plugin.ref} {plan.plugin.version} succeeded with the same config"
        )
    say(
        f"batch: {len(plan.to_run)} session(s) of {plan.plugin.ref} on the {executor.name} "
        "executor"
        + (
            f" with {jobs} job(s)"
            if batch.executor == "local"
            else f" with {jobs} worker job(s)"
            if batch.executor == "slurm"
            else ""
        )
    )
    if on_start is not None:
        on_start(len(plan.to_run))

    batch_id = stamp_id()
    started = utc_now()
    interrupted: BatchInterrupted | None = None
    facts = BatchRun(
        plan=plan,
        batch=batch,
        batch_id=batch_id,
        executor=executor,
        jobs=jobs,
        started=started,
    )
    progress_file = ProgressFile(lambda ended: running_summary(facts, ended))
    progress_file.write()
    report = _reporting_retries(on_event, batch.retries, progress_file.ended)
    try:
        results = run_with_retries(
            plan.to_run,
            batch.retries,
            lambda jobs: executor.run(jobs, report),
            _settle_reporting(plan.plugin, plan.backend, report),
        )
    except BatchInterrupted as exc:
        interrupted, results = exc, exc.results
    except SchedulerLost as exc:
        # a failure of the batch, said once; each session says what became of it
        say(f"{exc}; the batch ends with the sessions as their records show")
        results = exc.results
    progress_file.close()
    summary = summarise(
        facts,
        results,
        interrupted=interrupted is not None,
        finished=utc_now(),
        slurm_partition=getattr(executor, "partition", None),
        slurm_job_ids=getattr(executor, "job_ids", []),
    )
    say(f"summary: {summary.path}")
    if interrupted is not None:
        raise BatchSummaryInterrupted(summary, summary.path, interrupt_name(interrupted))
    return summary
