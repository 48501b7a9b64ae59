"""Which sessions a batch runs, which it skips, and every problem before the first starts."""

from __future__ import annotations

import fnmatch
from collections import Counter
from pathlib import Path

import msgspec

from mdivicomtools.batch.session import SessionJob, SessionResult
from mdivicomtools.errors import UsageError
from mdivicomtools.model.options import BatchOptions, RunOptions
from mdivicomtools.model.run import OutputFile, PluginInfo
from mdivicomtools.records.store import load_records
from mdivicomtools.runner import check_runs


class BatchValidationFailed(UsageError):
    """Pre-run problems in a batch: common ones once, the rest per session."""

    def __init__(self, common: list[str], per_session: dict[str, list[str]]) -> None:
        self.common = common
        self.per_session = per_session
        lines = [f"  - {p}" for p in common]
        lines += [f"  - {s}: {p}" for s, problems in per_session.items() for p in problems]
        super().__init__("the batch was not started:\n" + "\n".join(lines))


class BatchPlan(msgspec.Struct, kw_only=True):
    """What a batch will do: the validated jobs, the skipped sessions, the plugin."""

    plugin: PluginInfo
    config_sha256: str
    dataset_dir: Path
    out_dir: Path
    to_run: list[SessionJob]
    skipped: list[SessionResult]


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


def _outputs_present(folder: Path, outputs: list[OutputFile]) -> bool:
    """Whether the recorded output is still there: every entry with its size (lstat
    only; a content check would read every video of the batch again)."""
    if not folder.is_dir():
        return False
    for entry in outputs:
        try:
            # the record holds the escaped form for names that are not UTF-8
            found = (folder / entry.path).lstat() if not entry.escaped else None
        except OSError:
            return False
        if found is not None and found.st_size != entry.size:
            return False
    return True


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
    if not _outputs_present(session_out / plugin_id, latest.outputs):
        return None  # the output was deleted or changed since: run it again
    return f"succeeded in run {latest.run_id} with {plugin_id} {version} and the same config"


def _split_problems(problems: dict[str, list[str]], count: int) -> tuple[list[str], dict]:
    seen = Counter(p for ps in problems.values() for p in set(ps))
    common = sorted(p for p, n in seen.items() if n == count and count > 1)
    rest = {s: [p for p in ps if p not in common] for s, ps in problems.items()}
    return common, {s: ps for s, ps in rest.items() if ps}


def plan_batch(ref: str, options: RunOptions, batch: BatchOptions) -> BatchPlan:
    """Find the sessions, validate every one, and decide which run; raise
    BatchValidationFailed (nothing runs) when any session has a problem."""
    dataset_dir = Path(options.dataset).expanduser().absolute()
    out_dir = Path(options.out).expanduser().absolute()
    folders = find_sessions(dataset_dir, batch.sessions)
    work_root = Path(options.work).expanduser().absolute() if options.work is not None else None
    targets = [
        (folder, out_dir / folder.name, work_root / folder.name if work_root else None)
        for folder in folders
    ]
    plugin, config, sha, problem_lists = check_runs(ref, targets, options)
    skipped: list[SessionResult] = []
    to_run: list[SessionJob] = []
    problems: dict[str, list[str]] = {}
    for (folder, session_out, session_work), session_problems in zip(
        targets, problem_lists, strict=True
    ):
        reason = (
            resume_reason(session_out, plugin.id, plugin.version, sha) if batch.resume else None
        )
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
        session_options = options.with_changes(
            dataset=str(folder),
            out=str(session_out),
            work=str(session_work) if session_work else None,
            config=config,
            sets=(),
        )
        to_run.append(SessionJob(session=folder.name, ref=plugin.ref, options=session_options))
    if problems:
        # "common" means every session validated had it, not just the failing ones
        common, per_session = _split_problems(problems, len(targets) - len(skipped))
        raise BatchValidationFailed(common, per_session)
    return BatchPlan(
        plugin=plugin,
        config_sha256=sha,
        dataset_dir=dataset_dir,
        out_dir=out_dir,
        to_run=to_run,
        skipped=skipped,
    )
