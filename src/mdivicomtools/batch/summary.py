"""The batch summary, `<out>/_batches/<batch_id>.json`, written whatever happens."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from mdivicomtools.batch.plan import BatchPlan
from mdivicomtools.batch.session import SessionResult
from mdivicomtools.common.durable import write_atomic
from mdivicomtools.common.jsonio import decode_layout, json_files, pretty, write_json_atomic
from mdivicomtools.common.platform import pid_alive
from mdivicomtools.common.sharing import closed_by_another_user, closed_message
from mdivicomtools.common.text import os_reason
from mdivicomtools.common.timefmt import iso
from mdivicomtools.errors import RecordNotWritten, UsageError
from mdivicomtools.model.layout import batch_summary_path
from mdivicomtools.model.options import BatchOptions
from mdivicomtools.model.run import RunnerInfo
from mdivicomtools.records.store import runner_identity

BATCH_SCHEMA = "mdivicomtools.batch.v1"

#: `running` is written while the batch runs, and rewritten as each session ends;
#: `abandoned` is never written: readers show a `running` summary so when the
#: batch process that wrote it is gone
BatchStatus = Literal["running", "succeeded", "failed", "interrupted", "abandoned"]

#: the key of `totals` that counts, in a `running` summary, the sessions not yet ended
PENDING = "pending"


class BatchSummary(msgspec.Struct, kw_only=True):
    """`<out>/_batches/<batch_id>.json`."""

    schema: str = BATCH_SCHEMA
    batch_id: str
    status: BatchStatus
    plugin: str
    plugin_version: str
    config_sha256: str
    dataset_dir: str
    out_dir: str
    sessions_glob: str
    executor: str
    scheduler: str | None
    jobs: int
    started_at: str
    # null while `running`
    finished_at: str | None
    duration_s: float | None
    totals: dict[str, int]
    sessions: list[SessionResult]
    # --retries, and the tries each session took in all
    retries: int = 0
    attempts: dict[str, int] = {}
    # --executor slurm: the partition and every worker job's id
    slurm_partition: str | None = None
    slurm_job_ids: list[str] = []
    #: the batch process, so a summary left `running` by a dead one is told apart
    runner: RunnerInfo | None = None

    @property
    def path(self) -> Path:
        return batch_summary_path(Path(self.out_dir), self.batch_id)

    def counts(self) -> str:
        """The sessions counted by status, as every message names them ('2 interrupted,
        1 not_started'); empty for a batch of no session."""
        return ", ".join(f"{n} {status}" for status, n in sorted(self.totals.items()))


class BatchSummaryInterrupted(KeyboardInterrupt):
    """An interrupted batch, after its summary was written; `by` names the signal
    (`SIGTERM` or `Ctrl-C (SIGINT)`), as the command's last line says it."""

    def __init__(self, summary: BatchSummary, path: Path, by: str = "Ctrl-C (SIGINT)") -> None:
        # what a notebook's traceback shows, as RunInterrupted does: the batch id alone
        # said neither that the sessions were recorded nor where to look
        super().__init__(
            f"batch {summary.batch_id} of {summary.plugin} was interrupted by {by}: "
            f"{summary.counts() or 'no session'}; its summary is {path}"
        )
        self.summary = summary
        self.path = path
        self.by = by


def prepare_summary_folder(out: Path) -> None:
    """Make `<out>/_batches/` before any session starts; RecordNotWritten (exit 74)
    when --out cannot be written into.

    Without this a batch into a read-only mount or a path through a file
    started every session, each failed to write its record, and the batch
    ended without its summary, naming one session's folder.
    """
    folder = batch_summary_path(out, "x").parent
    if closed_by_another_user(folder, os.W_OK | os.X_OK):
        raise RecordNotWritten(
            closed_message(
                "the batch was not started",
                f"write into {str(folder)!r}",
                "group-writable (chmod g+rwx)",
            )
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    except OSError as exc:
        raise RecordNotWritten(
            f"the batch was not started: cannot write into --out {str(out)!r} "
            f"({exc.strerror or exc}: {exc.filename or folder}); choose a writable --out"
        ) from None


class RunsSessions(Protocol):
    """What a summary reads of the executor: its name, and the scheduler it
    reached, known only once it has started one (a Dask LocalCluster's port)."""

    name: str
    address: str | None


class BatchRun(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch's summaries say of the batch itself, fixed as it starts (but
    the executor's address, read as each summary is built): the running summary
    and the final one are built from the same, once."""

    plan: BatchPlan
    batch: BatchOptions
    batch_id: str
    executor: RunsSessions
    jobs: int
    started: datetime


def running_summary(run: BatchRun, results: list[SessionResult]) -> BatchSummary:
    """The summary of a batch still running: the sessions ended so far, and in
    `totals` how many are still `pending`."""
    return _summary(run, results, status="running", finished=None)


def _summary(
    run: BatchRun,
    results: list[SessionResult],
    *,
    status: BatchStatus,
    finished: datetime | None,
    slurm_partition: str | None = None,
    slurm_job_ids: list[str] | None = None,
) -> BatchSummary:
    plan, batch, started = run.plan, run.batch, run.started
    ordered = sorted([*plan.skipped, *results], key=lambda r: r.session)
    totals: dict[str, int] = dict(Counter(r.status for r in ordered))
    if status == "running":
        totals[PENDING] = len(plan.to_run) - len(results)
    return BatchSummary(
        batch_id=run.batch_id,
        status=status,
        plugin=plan.plugin.ref,
        plugin_version=plan.plugin.version,
        config_sha256=plan.config_sha256,
        dataset_dir=str(plan.dataset_dir),
        out_dir=str(plan.out_dir),
        sessions_glob=batch.sessions,
        executor=run.executor.name,
        scheduler=run.executor.address,
        jobs=run.jobs,
        started_at=iso(started),
        finished_at=None if finished is None else iso(finished),
        duration_s=None if finished is None else round((finished - started).total_seconds(), 3),
        totals=totals,
        sessions=ordered,
        retries=batch.retries,
        attempts={r.session: r.attempt for r in ordered if r.status != "skipped"},
        slurm_partition=slurm_partition,
        slurm_job_ids=list(slurm_job_ids or []),
        runner=runner_identity(),
    )


class ProgressFile:
    """The batch's summary, written `running` as the batch starts and rewritten as
    each session ends, so a script that did not start the batch (cron started it,
    a CI job waits for it) can poll `<out>/_batches/<batch_id>.json` for its status
    and counts; until then the file appeared only once the batch had ended.

    Best effort: a write that fails (a full disk) is left for the next, and the
    final summary, which `summarise` writes, carries the guarantees. Only the
    first write is fsynced (a batch's file exists durably from its start); a
    machine that loses power mid-batch may keep an older state of the file, or
    on some file systems an empty one, which `batches list` names unreadable. The
    executors report ends from the batch's own thread; the lock keeps a report
    from another thread from writing over a newer state with an older one.
    """

    def __init__(self, build: Callable[[list[SessionResult]], BatchSummary]) -> None:
        """`build` makes the `running` summary of the sessions ended so far
        (`running_summary` with the batch's fields)."""
        self._build = build
        self._ended: dict[str, SessionResult] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._durable = True

    def write(self) -> None:
        with self._lock:
            if self._closed:
                return
            summary = self._build(list(self._ended.values()))
            with contextlib.suppress(OSError):
                # whole for a reader, not fsynced: fsyncs after every session cost a
                # batch of 200 short sessions 18% of its time, and the final summary
                # (durable) replaces this one
                write_atomic(summary.path, pretty(summary), durable=self._durable)
                self._durable = False  # only the first: the batch's file exists durably

    def ended(self, result: SessionResult) -> None:
        """A session's last try ended (a try that will be retried is not its end)."""
        self._ended[result.session] = result
        self.write()

    def close(self) -> None:
        """No more writes: the final summary replaces the file."""
        with self._lock:
            self._closed = True


def shown_status(summary: BatchSummary) -> BatchStatus:
    """`abandoned` for a `running` summary whose batch process is gone (it was killed
    outright, its machine rebooted), as `runs list` shows a dead runner's record."""
    runner = summary.runner
    if summary.status != "running" or runner is None:
        return summary.status
    here = runner_identity()
    if runner.hostname != here.hostname:
        return "running"  # another machine's process cannot be checked from here
    if runner.boot_id and here.boot_id and runner.boot_id != here.boot_id:
        return "abandoned"
    return "running" if runner.pid == here.pid or pid_alive(runner.pid) else "abandoned"


def as_shown(summary: BatchSummary) -> BatchSummary:
    """The summary with the status `shown_status` gives it."""
    status = shown_status(summary)
    return summary if status == summary.status else msgspec.structs.replace(summary, status=status)


def summarise(
    run: BatchRun,
    results: list[SessionResult],
    *,
    interrupted: bool,
    finished: datetime,
    slurm_partition: str | None = None,
    slurm_job_ids: list[str] | None = None,
) -> BatchSummary:
    """Build the summary and write it; the caller decides what to raise.

    RecordNotWritten (exit 74) when the summary cannot be written (a full disk,
    a `_batches/` made read-only): one line naming it and the cause, as a run
    says of its record, instead of `internal error`. The sessions' records are
    written by then, and say how each ended.
    """
    # a session interrupted on its own (a signal to its process, a plugin raising
    # KeyboardInterrupt) while the batch went on has no output either: the batch
    # succeeded only if every session did, or was skipped or a dry run
    fine = {"succeeded", "skipped", "dry_run"}
    status: BatchStatus = (
        "interrupted"
        if interrupted
        else "failed"
        if any(r.status not in fine for r in [*run.plan.skipped, *results])
        else "succeeded"
    )
    summary = _summary(
        run,
        results,
        status=status,
        finished=finished,
        slurm_partition=slurm_partition,
        slurm_job_ids=slurm_job_ids,
    )
    try:
        write_json_atomic(summary.path, summary)
    except OSError as exc:
        raise RecordNotWritten(
            f"the batch ended {status} but its summary could not be written to "
            f"{str(summary.path)!r} ({exc.strerror or exc}); each session's record says "
            f"how it ended (`mdivicom runs list {run.plan.out_dir}`) and --resume runs what did "
            "not succeed; free space or make the folder writable"
        ) from None
    return summary


def load_summaries(out: Path, *, sessions: bool = True) -> tuple[list[BatchSummary], list[str]]:
    """Every batch summary under `<out>/_batches/`, oldest first, and the unreadable ones.

    Batch ids are UTC time stamps, so their order is the order the batches started.
    OSError when `_batches/` cannot be listed (another user's, private). With
    `sessions` False each summary is kept without its list of sessions (still
    read, so a damaged one is named): a table of hundreds of batches of
    hundreds of sessions held them all.
    """
    folder = batch_summary_path(out, "x").parent
    summaries: list[BatchSummary] = []
    problems: list[str] = []
    for path in json_files(folder):
        try:
            summary = decode_layout(path.read_bytes(), BatchSummary, BATCH_SCHEMA)
        except (OSError, msgspec.DecodeError) as exc:
            problems.append(f"skipped {str(path)!r}: {os_reason(exc, path)}")
            continue
        summaries.append(summary if sessions else msgspec.structs.replace(summary, sessions=[]))
    summaries.sort(key=lambda s: (s.started_at, s.batch_id))
    return summaries, problems


def find_summary(out: Path, batch_id: str) -> tuple[BatchSummary, list[str]]:
    """The summary of `batch_id` (`latest`, an id or a start of one that only one batch
    has) under `out`, and a problem for each file read that could not be.

    Only the files that may be it are read. A summary lists every session, so
    hundreds of batches of hundreds of sessions make tens of megabytes, and
    reading them all to show one took seconds. Batch ids are the file names and
    start with the batch's start to the second: `latest` is among the files of
    the newest second that has a readable summary, the later start winning
    within it. UsageError when there is no such batch or several; OSError when
    `_batches/` cannot be listed.
    """
    paths = json_files(batch_summary_path(out, "x").parent)
    problems: list[str] = []
    none = f"no batches under {str(out)!r}; run one with `mdivicom run --sessions`"

    def read(path: Path) -> BatchSummary | None:
        try:
            return decode_layout(path.read_bytes(), BatchSummary, BATCH_SCHEMA)
        except (OSError, msgspec.DecodeError) as exc:
            problems.append(f"skipped {str(path)!r}: {os_reason(exc, path)}")
            return None

    if batch_id == "latest":
        newest: list[BatchSummary] = []
        for path in reversed(paths):
            if newest and path.stem.split("_")[0] < newest[0].batch_id.split("_")[0]:
                break
            summary = read(path)
            if summary is not None:
                newest.append(summary)
        if not newest:
            raise UsageError(none)
        return max(newest, key=lambda s: (s.started_at, s.batch_id)), problems
    named = [path for path in paths if path.stem == batch_id] or [
        path for path in paths if path.stem.startswith(batch_id)
    ]
    found = [summary for summary in map(read, named) if summary is not None]
    if len(found) == 1:
        return found[0], problems
    if found:
        shown = ", ".join(s.batch_id for s in found[:5])
        raise UsageError(
            f"{batch_id!r} is the start of several batch ids ({shown}); give more of it"
        )
    if not paths:
        raise UsageError(none)
    known = ", ".join(path.stem for path in paths[-5:])
    raise UsageError(
        f"no batch {batch_id!r} under {str(out)!r} (the latest: {known}); "
        "see `mdivicom batches list OUT`"
    )
