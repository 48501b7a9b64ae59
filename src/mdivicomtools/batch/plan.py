"""Which sessions a batch runs, which it skips, and every problem before the first starts."""

from __future__ import annotations

import fnmatch
import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

from mdivicomtools.batch.session import SessionJob, SessionResult
from mdivicomtools.common.home import expand_home
from mdivicomtools.common.safefs import disk_name, path_problem
from mdivicomtools.common.text import os_reason, printable
from mdivicomtools.errors import UsageError, on_command_line
from mdivicomtools.model.layout import BATCHES_DIR, RUNS_DIR, STAGING_DIR, WORK_DIR
from mdivicomtools.model.options import BatchOptions, RunOptions
from mdivicomtools.model.run import PluginInfo, RunRecord, status_words
from mdivicomtools.records.digest import (
    DatasetEntry,
    compare_dataset,
    read_manifest,
    scan_dataset,
    walk_files,
)
from mdivicomtools.records.store import RecordUnreadable, full_record, records_for, shown_status
from mdivicomtools.runner import check_runs
from mdivicomtools.runner.facts import run_facts
from mdivicomtools.runner.rerun import RERUNS_DIR
from mdivicomtools.runner.run import dataset_problems


class BatchValidationFailed(UsageError):
    """Pre-run problems in a batch: common ones once, the rest per session."""

    def __init__(self, common: list[str], per_session: dict[str, list[str]]) -> None:
        self.common = common
        self.per_session = per_session
        lines = [f"  - {p}" for p in common]
        # a folder name is the disk's: escaped as the table and progress lines show it
        # (`ses-\xff02`, `\n`), so it can neither split nor forge a line of the list
        lines += [
            f"  - {printable(s)}: {p}" for s, problems in per_session.items() for p in problems
        ]
        super().__init__("the batch was not started:\n" + "\n".join(lines))


class BatchPlan(msgspec.Struct, kw_only=True):
    """What a batch will do: the validated jobs, the skipped sessions, the plugin."""

    plugin: PluginInfo
    config_sha256: str
    #: the backend the sessions run on, as chosen here (for the records the batch
    #: writes itself, of tries whose worker was lost)
    backend: str | None = None
    dataset_dir: Path
    out_dir: Path
    to_run: list[SessionJob]
    skipped: list[SessionResult]


#: the run root's own folders (model.layout, `rerun`'s): a session's output goes to
#: <out>/<session>/, so a session of one of these names would write into them
RUN_ROOT_FOLDERS = frozenset({RUNS_DIR, STAGING_DIR, BATCHES_DIR, WORK_DIR, RERUNS_DIR})


def _matches(name: str, pattern: str) -> bool:
    """fnmatch as a shell globs: a leading dot is matched only by a leading dot."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatch(name, pattern)


def find_sessions(dataset: Path, pattern: str) -> list[Path]:
    sessions = dataset / "sessions"
    if not sessions.is_dir():
        raise UsageError(
            f"{str(sessions)!r} is not a folder; --sessions needs <dataset>/sessions/<session>/"
        )
    found = sorted(p for p in sessions.iterdir() if p.is_dir() and _matches(p.name, pattern))
    clashing = [p.name for p in found if p.name in RUN_ROOT_FOLDERS]
    if clashing:
        raise UsageError(
            f"--sessions {pattern!r} matches {', '.join(clashing)} in {str(sessions)!r}, "
            f"named as a folder of the run root itself (<out>/{clashing[0]}/): rename it, or "
            "leave it out of --sessions (e.g. '[!_]*')"
        )
    if not found:
        present = sorted(
            p.name for p in sessions.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        names = ", ".join(present[:5]) + (
            f", ... ({len(present)} in all)" if len(present) > 5 else ""
        )
        names = names or "none"
        raise UsageError(
            f"--sessions {pattern!r} matches no folder in {str(sessions)!r} (there are: {names})"
        )
    return found


def _missing_outputs(record: RunRecord, session_out: Path) -> list[str]:
    """Recorded outputs that are gone or have another size now (a stat each, no read)."""
    out_dir = session_out / record.plugin.id
    missing = []
    for output in record.outputs:
        if path_problem(output.path) is not None:  # an altered record: never a file of the run
            missing.append(output.path)
            continue
        try:
            # a name that is not UTF-8 is in the record escaped: checked by its name on disk
            if (out_dir / disk_name(output.path, output.escaped)).lstat().st_size != output.size:
                missing.append(output.path)
        except OSError:
            missing.append(output.path)
    return missing


def _same_image(a: str, b: str) -> bool:
    """Docker reports `sha256:<hex>`, Podman the bare hex."""
    return a.removeprefix("sha256:") == b.removeprefix("sha256:")


def resume_decision(
    session_out: Path,
    dataset: Path | None,
    plugin_id: str,
    version: str,
    sha: str,
    image_id: str | None = None,
    walk: Callable[[Path], list[DatasetEntry]] = walk_files,
) -> tuple[str | None, str | None]:
    """(why the session is skipped, None) or (None, why it runs again; None for a first run).

    Skipped only when the latest run of this plugin succeeded with the same
    plugin version, config and (`image_id`, for a container plugin) image,
    its outputs are all still there, and the dataset is what it was then: by
    content digest when that run recorded one (the digest cache makes this a
    stat walk for unchanged files), else by its stat fingerprint. `dataset`
    None skips the dataset check; `walk` walks it (the plan's keeps the walk
    for its check of the session).
    """
    try:
        records = records_for(session_out, "latest")
    except RecordUnreadable as exc:
        # perhaps a newer run of this very plugin: what it did is unknown, so run again
        return None, str(exc)
    mine = [r for r in records if r.plugin.id == plugin_id and r.status != "dry_run"]
    if not mine:
        return None, None
    if mine[-1].status != "succeeded":
        # as `runs list` shows it: a `running` record whose runner died is abandoned
        status = shown_status(mine[-1], session_out)
        return None, f"last run {status_words(status)}"
    try:
        latest = full_record(mine[-1])
    except RecordUnreadable as exc:  # changed since it was listed: run again
        return None, str(exc)
    if latest.plugin.version != version:
        return None, f"plugin version changed ({latest.plugin.version} -> {version})"
    if latest.config_sha256 != sha:
        return None, "config changed"
    pinned = latest.container.image_id if latest.container is not None else None
    if image_id is not None and pinned is not None and not _same_image(pinned, image_id):
        before, now = pinned.removeprefix("sha256:"), image_id.removeprefix("sha256:")
        return None, f"image changed ({before[:12]} -> {now[:12]})"
    missing = _missing_outputs(latest, session_out)
    if missing:
        return None, f"output missing: {len(missing)} file(s)"
    if dataset is not None:
        recorded = latest.dataset
        if recorded is None:
            return None, "input not recorded by the last run (an older record)"
        try:
            current, current_files = scan_dataset(
                dataset, contents=recorded.digest is not None, walked=walk(dataset)
            )
        except OSError as exc:
            return None, f"input unreadable: {os_reason(exc)}"
        changes = compare_dataset(
            recorded, read_manifest(session_out, recorded.manifest), current, current_files
        )
        if changes:
            return None, (
                "input changed" if changes.unnamed else f"input changed: {changes.count} file(s)"
            )
    return (
        f"succeeded in run {latest.run_id} on the same input with {plugin_id} {version} "
        "and the same config",
        None,
    )


def _kept_walk(kept: list[list[DatasetEntry] | OSError], root: Path) -> list[DatasetEntry]:
    """`walk_files(root)`, its outcome (files or OSError) also put in `kept`."""
    try:
        files = walk_files(root)
    except OSError as exc:
        kept.append(exc)
        raise
    kept.append(files)
    return files


def _split_problems(problems: dict[str, list[str]], count: int) -> tuple[list[str], dict]:
    seen = Counter(p for ps in problems.values() for p in set(ps))
    common = sorted(p for p, n in seen.items() if n == count and count > 1)
    rest = {s: [p for p in ps if p not in common] for s, ps in problems.items()}
    return common, {s: ps for s, ps in rest.items() if ps}


def plan_batch(ref: str, options: RunOptions, batch: BatchOptions) -> BatchPlan:
    """Find the sessions, validate every one, and decide which run; raise
    BatchValidationFailed (nothing runs) when any session has a problem."""
    dataset_dir = expand_home(options.dataset).absolute()
    out_dir = expand_home(options.out).absolute()
    folders = find_sessions(dataset_dir, batch.sessions)
    work_root = expand_home(options.work).absolute() if options.work is not None else None
    targets = [
        (folder, out_dir / folder.name, work_root / folder.name if work_root else None)
        for folder in folders
    ]
    decisions: dict[str, tuple[str | None, str | None]] = {}
    # a session --resume walked is checked with that walk: its folder was walked
    # three times before it ran (the decision, the check, the run's own walk)
    checked: dict[str, list[str]] = {}
    if batch.resume:
        facts = run_facts(ref, options)
        plugin, config, sha = facts.plugin, facts.config, facts.config_sha256
        for folder, session_out, _work in targets:
            walked: list[list[DatasetEntry] | OSError] = []
            decisions[folder.name] = resume_decision(
                session_out,
                folder,
                plugin.id,
                plugin.version,
                sha,
                facts.image_id,
                walk=functools.partial(_kept_walk, walked),
            )
            if walked and decisions[folder.name][0] is None:  # it runs: checked now, so
                # that no more than one session's files are held at a time
                checked[folder.name] = dataset_problems(
                    folder, contents=facts.hash_dataset, walked=walked[0]
                )
    skipped: list[SessionResult] = []
    pending = []
    for folder, session_out, session_work in targets:
        reason = decisions.get(folder.name, (None, None))[0]
        if reason is None:
            pending.append((folder, session_out, session_work))
            continue
        # the run it relied on is the reason, not an error: a script that counts the
        # sessions with an `error` counted every skipped one among the failures
        skipped.append(
            SessionResult(
                session=folder.name, status="skipped", out=str(session_out), reason=reason
            )
        )
    # a stale session (input, config or version changed, output missing) replaces its
    # own earlier output: that is what --resume asks for; another publisher's never
    stale = {f.name for f, _, _ in pending if decisions.get(f.name, (None, None))[1] is not None}
    problem_of: dict[str, list[str]] = {}
    backend: str | None = None
    for overwrite in (False, True):
        group = [t for t in pending if (t[0].name in stale) == overwrite]
        if not group:
            continue
        group_options = options.with_changes(overwrite=True) if overwrite else options
        found = check_runs(ref, group, group_options, [checked.get(t[0].name) for t in group])
        plugin, config, sha, backend = (
            found.plugin,
            found.config,
            found.config_sha256,
            found.backend,
        )
        problem_of.update({t[0].name: p for t, p in zip(group, found.problems, strict=True)})
    to_run: list[SessionJob] = []
    problems: dict[str, list[str]] = {}
    for folder, session_out, session_work in pending:
        why = decisions.get(folder.name, (None, None))[1]
        session_problems = problem_of[folder.name]
        if session_problems:
            problems[folder.name] = session_problems
            continue
        session_options = options.with_changes(
            dataset=str(folder),
            out=str(session_out),
            work=str(session_work) if session_work else None,
            config=config,
            sets=(),
            overwrite=options.overwrite or folder.name in stale,
        )
        to_run.append(
            SessionJob(
                session=folder.name,
                ref=plugin.ref,
                options=session_options,
                reason=why,
                command_line=on_command_line(),
            )
        )
    if problems:
        # "common" means every session validated had it, not just the failing ones
        common, per_session = _split_problems(problems, len(targets) - len(skipped))
        raise BatchValidationFailed(common, per_session)
    return BatchPlan(
        plugin=plugin,
        config_sha256=sha,
        backend=backend,
        dataset_dir=dataset_dir,
        out_dir=out_dir,
        to_run=to_run,
        skipped=skipped,
    )
