"""Many sessions at once (INTERFACE.md section 6): plan, resume, run, summarise.

`run_batch` fans one plugin out over `<dataset>/sessions/<glob>/`: each session
is a complete single run with `<out>/<session>/` as its run root. Everything is
validated before the first session starts (problems common to all sessions are
reported once), sessions that already succeeded with the same plugin version
and config can be skipped (`resume`), and a summary goes to
`<out>/_batches/<batch_id>.json` whatever happens.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.config import build_config
from mdivicomtools.errors import UsageError
from mdivicomtools.executors import (
    BatchInterrupted,
    DaskExecutor,
    LocalExecutor,
    SessionJob,
    SessionResult,
)
from mdivicomtools.records import load_records, new_run_id, write_json_atomic

BATCH_SCHEMA = "mdivicomtools.batch.v1"
BATCHES_DIR = "_batches"


class BatchSummary(msgspec.Struct, kw_only=True):
    """`<out>/_batches/<batch_id>.json`."""

    schema: str = BATCH_SCHEMA
    batch_id: str
    status: str
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
    finished_at: str
    duration_s: float
    totals: dict[str, int]
    sessions: list[SessionResult]


class BatchValidationFailed(UsageError):
    """Pre-run problems in a batch: common ones once, the rest per session."""

    def __init__(self, common: list[str], per_session: dict[str, list[str]]) -> None:
        self.common = common
        self.per_session = per_session
        lines = [f"  - {p}" for p in common]
        lines += [f"  - {s}: {p}" for s, problems in per_session.items() for p in problems]
        super().__init__("the batch was not started:\n" + "\n".join(lines))


def find_sessions(dataset: Path, pattern: str) -> list[Path]:
    sessions = dataset / "sessions"
    if not sessions.is_dir():
        raise UsageError(
            f"{str(sessions)!r} is not a folder; --sessions needs <dataset>/sessions/<session>/"
        )
    found = sorted(p for p in sessions.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, pattern))
    if not found:
        names = ", ".join(sorted(p.name for p in sessions.iterdir() if p.is_dir())[:5]) or "none"
        raise UsageError(
            f"--sessions {pattern!r} matches no folder in {str(sessions)!r} (there are: {names})"
        )
    return found


def resume_reason(session_out: Path, plugin_id: str, version: str, sha: str) -> str | None:
    """Why a session can be skipped, or None: its latest run of this plugin succeeded
    with the same plugin version and the same config."""
    records, _ = load_records(session_out)
    mine = [r for r in records if r.plugin.id == plugin_id and r.status != "dry_run"]
    if not mine:
        return None
    latest = mine[-1]
    if latest.status != "succeeded":
        return None
    if latest.plugin.version != version or latest.config_sha256 != sha:
        return None
    return f"succeeded in run {latest.run_id} with {plugin_id} {version} and the same config"


def _split_problems(problems: dict[str, list[str]], count: int) -> tuple[list[str], dict]:
    seen = Counter(p for ps in problems.values() for p in set(ps))
    common = sorted(p for p, n in seen.items() if n == count and count > 1)
    rest = {s: [p for p in ps if p not in common] for s, ps in problems.items()}
    return common, {s: ps for s, ps in rest.items() if ps}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_batch(
    ref: str,
    *,
    dataset: str | Path,
    out: str | Path,
    sessions: str,
    config: str | dict[str, Any] | None = None,
    sets: tuple[str, ...] | list[str] = (),
    work: str | Path | None = None,
    backend: str | None = None,
    dry_run: bool = False,
    timeout: float | None = None,
    overwrite: bool = False,
    isolate: bool = False,
    strict_bundles: bool | None = None,
    jobs: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    resume: bool = False,
    progress: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_event: Callable[[str, SessionJob, SessionResult | None], None] | None = None,
) -> BatchSummary:
    """Run `ref` on every matching session; returns (and writes) the batch summary.

    Raises BatchValidationFailed (exit 2) before anything runs, and
    BatchSummaryInterrupted after writing the summary of an interrupted batch.
    `on_start` gets the number of sessions about to run; `on_event` gets
    ("started" | "finished", job, result) as sessions start and finish.
    """
    from mdivicomtools.runner import check_runs

    say = progress or (lambda message: None)
    dataset_dir = Path(dataset).expanduser().absolute()
    out_dir = Path(out).expanduser().absolute()
    jobs = jobs if jobs is not None else default_jobs()
    if executor not in ("local", "dask"):
        raise UsageError(f"--executor must be local or dask, got {executor!r}")
    chosen = LocalExecutor(jobs) if executor == "local" else DaskExecutor(scheduler, jobs)
    folders = find_sessions(dataset_dir, sessions)
    run_config = build_config(config, sets)
    work_root = Path(work).expanduser().absolute() if work is not None else None
    targets = [
        (folder, out_dir / folder.name, work_root / folder.name if work_root else None)
        for folder in folders
    ]
    plugin, sha, problem_lists = check_runs(
        ref,
        targets,
        config=run_config,
        backend=backend,
        dry_run=dry_run,
        timeout=timeout,
        overwrite=overwrite,
        isolate=isolate,
    )
    skipped: list[SessionResult] = []
    to_run: list[SessionJob] = []
    problems: dict[str, list[str]] = {}
    for (folder, session_out, session_work), session_problems in zip(
        targets, problem_lists, strict=True
    ):
        reason = resume_reason(session_out, plugin.id, plugin.version, sha) if resume else None
        if reason is not None:
            skipped.append(
                SessionResult(
                    session=folder.name, status="skipped", error=reason, out=str(session_out)
                )
            )
            continue
        if session_problems:
            problems[folder.name] = session_problems
            continue
        to_run.append(
            SessionJob(
                session=folder.name,
                ref=plugin.ref,
                dataset=str(folder),
                out=str(session_out),
                work=str(session_work) if session_work else None,
                config=run_config,
                backend=backend,
                dry_run=dry_run,
                timeout=timeout,
                overwrite=overwrite,
                isolate=isolate,
                strict_bundles=strict_bundles,
            )
        )
    if problems:
        # "common" means every session validated had it, not just the failing ones
        common, per_session = _split_problems(problems, len(targets) - len(skipped))
        raise BatchValidationFailed(common, per_session)
    if skipped:
        say(
            f"resume: skipping {len(skipped)} session(s) whose latest run of {plugin.ref} "
            f"{plugin.version} succeeded with the same config"
        )
    say(
        f"batch: {len(to_run)} session(s) of {plugin.ref} on the {chosen.name} executor"
        + (f" with {jobs} job(s)" if executor == "local" else "")
    )
    if on_start is not None:
        on_start(len(to_run))
    batch_id = new_run_id()
    started = datetime.now(timezone.utc)
    interrupted: BatchInterrupted | None = None
    try:
        results = chosen.run(to_run, on_event or (lambda kind, job, result: None))
    except BatchInterrupted as exc:
        interrupted = exc
        results = exc.results
    finished = datetime.now(timezone.utc)
    ordered = sorted([*skipped, *results], key=lambda r: r.session)
    totals = dict(Counter(r.status for r in ordered))
    bad = {"failed", "timed_out"}
    status = (
        "interrupted"
        if interrupted
        else "failed"
        if any(r.status in bad for r in ordered)
        else "succeeded"
    )
    summary = BatchSummary(
        batch_id=batch_id,
        status=status,
        plugin=plugin.ref,
        plugin_version=plugin.version,
        config_sha256=sha,
        dataset_dir=str(dataset_dir),
        out_dir=str(out_dir),
        sessions_glob=sessions,
        executor=chosen.name,
        scheduler=chosen.address,
        jobs=jobs,
        started_at=_iso(started),
        finished_at=_iso(finished),
        duration_s=round((finished - started).total_seconds(), 3),
        totals=totals,
        sessions=ordered,
    )
    path = out_dir / BATCHES_DIR / f"{batch_id}.json"
    write_json_atomic(path, summary)
    say(f"summary: {path}")
    if interrupted is not None:
        raise BatchSummaryInterrupted(summary, path) from interrupted
    return summary


class BatchSummaryInterrupted(KeyboardInterrupt):
    """An interrupted batch, after its summary was written."""

    def __init__(self, summary: BatchSummary, path: Path) -> None:
        super().__init__(summary.batch_id)
        self.summary = summary
        self.path = path


def default_jobs() -> int:
    """The CPUs this process may use (respecting affinity, e.g. a Slurm allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux
