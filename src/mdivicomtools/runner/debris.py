"""What a dead runner leaves behind, found and removed.

A runner killed with SIGKILL (or a machine that lost power) cannot clean up:
its `_staging/<run_id>/` stays, holding partial outputs and, for container
runs, the plugin's config; its record still says `running`. Every run writes
its record before it stages anything and holds its plugin's lock throughout,
so a staging folder is debris when nobody holds the lock of its plugin (or
the caller does, `holding`). The lock is taken before the record is read and
kept while the record is rewritten: a record read first could belong to a run
that ends a moment later, and its final record was then overwritten. The
next run into the same folder and `mdivicom runs clean OUT` remove it, and
rewrite a dead run's record as `abandoned`.
"""

from __future__ import annotations

import contextlib
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec

from mdivicomtools.common.durable import leftover_writes, remove_if_abandoned
from mdivicomtools.common.jsonio import json_files
from mdivicomtools.common.safefs import Removal, open_append, remove_tree
from mdivicomtools.common.text import some
from mdivicomtools.common.timefmt import iso, utc_now
from mdivicomtools.errors import MdivicomError
from mdivicomtools.model.layout import BATCHES_DIR, STAGING_DIR, runs_dir, staging_root
from mdivicomtools.model.run import ErrorInfo, RunRecord, Status
from mdivicomtools.records.digest import MANIFEST_GRACE_S, MANIFESTS_DIR, manifest_relpath
from mdivicomtools.records.promotion import foreign_staging, promoting
from mdivicomtools.records.store import (
    read_record,
    record_files,
    rewrite_record,
    runner_gone,
)
from mdivicomtools.runner.staging import lock_if_free, roll_back

ABANDONED = (
    "the runner stopped before the run finished (killed, or the machine went down); "
    "its staging folder was removed"
)


def _record_of(run_out_dir: Path, run_id: str) -> RunRecord | None:
    path = runs_dir(run_out_dir) / f"{run_id}.json"
    try:
        return read_record(path)
    except (OSError, msgspec.DecodeError):
        return None


def _abandon(run_out_dir: Path, record: RunRecord) -> Cleaned | None:
    """Rewrite a dead run's record `abandoned`; what could not be written, as a line
    that is not done (a full disk, a read-only `_runs/`): the record still says
    `running` then, and saying it was marked would be untrue."""
    path = runs_dir(run_out_dir) / f"{record.run_id}.json"
    record.status = "abandoned"
    record.error = ErrorInfo(type="Abandoned", message=ABANDONED)
    record.finished_at = iso(utc_now())
    try:
        rewrite_record(path, record)
    except OSError as exc:
        return Cleaned(
            f"could not mark run {record.run_id} abandoned (its runner is gone): cannot "
            f"write {str(path)!r} ({exc.strerror or exc}); free space or make the folder "
            "writable, and clean again",
            done=False,
        )
    return None


class CleanIncomplete(MdivicomError):
    """`runs clean` left something it should have removed (exit 1): the folder is
    named with why, so the operator can fix the permissions and clean again."""


@dataclass(frozen=True)
class Cleaned:
    """One thing `remove_dead_runs` did, or could not do (`done` False): its line
    never says "removed" for a folder that is still there."""

    text: str
    done: bool = True

    def __str__(self) -> str:
        return self.text


def _left_over(folder: Path, why: str, removal: Removal) -> Cleaned:
    return Cleaned(
        f"not all of {folder} ({why}): could not remove {some(removal.left, 1)}; "
        "give the user running mdivicom write access to it (or remove it as its owner)",
        done=False,
    )


def _not_judged(what: str, exc: OSError) -> Cleaned:
    return Cleaned(
        f"could not {what} ({exc.strerror or exc}); run `mdivicom runs clean` as its owner",
        done=False,
    )


def _not_ours(folder: Path, why: str) -> Cleaned:
    return Cleaned(
        f"left {folder} alone: {why}, not a folder a runner of this user made; "
        "remove it as its owner",
        done=False,
    )


def _staging_left(run_out_dir: Path, run_id: str) -> bool:
    """Whether the run's staging folder is (or may be: a `_staging/` this user may not
    enter) still there; its record is not `abandoned`, "staging folder removed", then."""
    try:
        os.lstat(staging_root(run_out_dir, run_id))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _remove_older_result(run_out_dir: Path, run_id: str) -> None:
    """An isolated run of an earlier release passed its plugin's return value through
    `_runs/.<run_id>.result.json`, removed by its runner once read: a runner killed
    first left it beside the records for good, where nothing reads it."""
    with contextlib.suppress(OSError):
        (runs_dir(run_out_dir) / f".{run_id}.result.json").unlink()


def _plugins_in(folder: Path) -> list[str]:
    """The plugins whose run left `folder` (a staging folder without a readable record):
    its plugin output folder, or the one whose promotion it holds."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(("_", "."))}
    with contextlib.suppress(OSError):
        names.add(promoting(folder) or "")
    # the marker is text anyone able to write the folder chose: a "plugin" named
    # `/../../x` made the lock taken for it a file `x.lock` made wherever that led
    return sorted(name for name in names if name and name == os.path.basename(name))


def _staging_of_dead_run(
    run_out_dir: Path, folder: Path, held: ExitStack, holding: str | None
) -> tuple[RunRecord | None, bool]:
    """(its record, read again) when the run that left `folder` is dead, with every lock
    its plugin needs now held in `held`; (None, False) while it may be live.

    The run is judged only once its runner cannot write any more: with its
    plugin's lock held no run of the plugin is live. Reading the record first
    and the lock after lost a run that ended in between (its `succeeded`
    record rewritten `abandoned`).
    """
    record = _record_of(run_out_dir, folder.name)
    plugins = [record.plugin.id] if record is not None else _plugins_in(folder)
    for plugin in plugins:
        if plugin != holding and not held.enter_context(lock_if_free(run_out_dir, plugin)):
            return None, False
    return _record_of(run_out_dir, folder.name), True


def _settle_dead(
    run_out_dir: Path, folder: Path, record: RunRecord | None
) -> tuple[str | None, Cleaned | None]:
    """Under the dead run's lock: undo what it promoted without a `succeeded` record,
    and mark its record `abandoned`. Returns what was undone and what of the record
    could not be written; raises OSError when the previous output cannot be put
    back (then its staging folder must stay)."""
    undone = None
    if record is None or record.status != "succeeded":
        undone = roll_back(run_out_dir, folder.name)
    unmarked = None
    if record is not None and record.status == "running":
        unmarked = _abandon(run_out_dir, record)
    return undone, unmarked


def _remove_cut_writes(run_out_dir: Path) -> list[Cleaned]:
    """Remove the temporary files of record, manifest and summary writes that were cut
    short (a runner killed while it wrote one); those a live process is writing stay.

    They are hidden and never read as records, but each stayed for good.
    """
    done: list[Cleaned] = []
    runs = runs_dir(run_out_dir)
    for folder in (runs, runs / MANIFESTS_DIR, run_out_dir / BATCHES_DIR):
        for partial in leftover_writes(folder):
            try:
                removed = remove_if_abandoned(partial)
            except OSError as exc:
                done.append(_not_judged(f"remove {partial}, left by a write cut short", exc))
                continue
            if removed:
                done.append(Cleaned(f"removed {partial} (a write cut short, by a dead process)"))
    return done


class _DatasetRef(msgspec.Struct):
    manifest: str | None = None


class _Status(msgspec.Struct):
    """What `runs clean` reads of every record: its status, and the manifest it names."""

    status: str
    dataset: _DatasetRef | None = None


def _remove_unnamed_manifests(run_out_dir: Path, named: set[str]) -> list[Cleaned]:
    """Remove the dataset manifests in `_runs/datasets/` that no record names.

    A record names its manifest by its path from the run root (`dataset.manifest`:
    `_runs/datasets/<sha256>.json`, an earlier release's `<run_id>.json`); one no
    record names is left by a record someone deleted, and nothing reads it. Ones
    written or named in the last MANIFEST_GRACE_S are kept: a run in progress
    writes its manifest moments before its final record names it.
    """
    folder = runs_dir(run_out_dir) / MANIFESTS_DIR
    try:
        paths = json_files(folder)
    except OSError as exc:
        return [_not_judged(f"look into {folder} for dataset manifests no record names", exc)]
    cutoff = time.time() - MANIFEST_GRACE_S
    removed, freed, left = 0, 0, []
    for path in paths:
        if os.path.normpath(manifest_relpath(path.name)) in named:
            continue
        try:
            stat = path.lstat()
            if stat.st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            left.append(f"{path.name} ({exc.strerror or exc})")
            continue
        removed += 1
        freed += stat.st_size
    done = []
    if removed:
        done.append(
            Cleaned(
                f"removed {removed} dataset manifest(s) no record names from {folder} "
                f"({freed / 2**20:.1f} MiB)"
            )
        )
    if left:
        done.append(
            Cleaned(
                f"could not remove {len(left)} dataset manifest(s) no record names in "
                f"{folder}: {some(left, 3)}",
                done=False,
            )
        )
    return done


def remove_dead_runs(
    run_out_dir: Path, *, every_record: bool = False, holding: str | None = None
) -> list[Cleaned]:
    """Remove the staging of every dead run under run_out_dir; one line per thing done.

    Each run calls this with only the staging folders to look at (cheap however
    many records there are), holding its own plugin's lock (`holding`); `runs
    clean` also reads every record, to mark `abandoned` the `running` ones whose
    staging is already gone and to remove the dataset manifests none names. A
    run is dead when its plugin's lock is free; it is held while the run is
    judged, a promotion it left unfinished is rolled back and its record
    rewritten. A folder that cannot be removed entirely gives a
    line with `done` False naming what is left.
    """
    done: list[Cleaned] = []
    staging = run_out_dir / STAGING_DIR
    try:
        if os.path.islink(staging):
            folders = []
            done.append(_not_ours(staging, foreign_staging(staging) or "a symbolic link"))
        else:
            folders = sorted(p for p in staging.iterdir() if p.is_dir()) if staging.is_dir() else []
    except OSError as exc:  # another user's, private: what is in it cannot be judged here
        folders = []
        done.append(_not_judged(f"look into {staging} for what dead runs left", exc))
    for folder in folders:
        with ExitStack() as held:
            try:
                record, dead = _staging_of_dead_run(run_out_dir, folder, held, holding)
            except OSError as exc:  # no readable record, and a folder this user cannot list
                done.append(_not_judged(f"tell whether the run that left {folder} is dead", exc))
                continue
            if not dead or not folder.is_dir():
                continue  # live, or another cleaner was first
            try:
                os.listdir(folder)
            except OSError as exc:
                # another user's run folder, private to them (0700): whether it holds
                # a promotion to undo cannot be told here, so it is not judged at all
                # (the marker it could not read was taken for an undo that failed)
                done.append(_not_judged(f"look into {folder}, left by a dead run", exc))
                continue
            foreign = foreign_staging(folder)
            if foreign is not None:
                # no runner of this user made it: a promotion "undone" from it moved this
                # user's output into a folder someone else chose, and removing it removed
                # whatever it leads to
                done.append(_not_ours(folder, foreign))
                continue
            if record is None:
                why = "no record"
            elif record.status == "running":
                why = "its runner is gone"
            else:
                why = f"the run ended {record.status}"
            try:
                undone, unmarked = _settle_dead(run_out_dir, folder, record)
            except OSError as exc:
                done.append(
                    Cleaned(
                        f"kept {folder} ({why}): it holds the previous output of a promotion "
                        f"that did not finish, which could not be put back ({exc}); fix the "
                        "permissions and clean again",
                        done=False,
                    )
                )
                continue
        # settled and unlocked: the folder is nobody's now, and may take long to remove
        said = f"{undone}; " if undone else ""
        removal = remove_tree(folder)
        if removal.removed:
            _remove_older_result(run_out_dir, folder.name)
            done.append(Cleaned(f"{said}removed {folder} ({why})"))
        else:
            done.append(Cleaned(said + _left_over(folder, why, removal).text, done=False))
        if unmarked is not None:
            done.append(unmarked)
    with contextlib.suppress(OSError):
        staging.rmdir()
    if not every_record:
        return done
    done.extend(_remove_cut_writes(run_out_dir))
    # records left `running` whose staging is already gone
    try:
        paths = record_files(run_out_dir)
    except OSError as exc:  # another user's, private: its runs cannot be judged here
        paths = None
        done.append(_not_judged(f"look into {runs_dir(run_out_dir)} for runs left running", exc))
    #: the manifests the records name; None once a record could not be read, whose
    #: manifest cannot be told, so that none is removed
    named: set[str] | None = set()
    for path in paths or []:
        try:
            # the status alone first: whole, a record lists every output of its run,
            # and all but a few in a folder of thousands of runs are finished
            status = msgspec.json.decode(path.read_bytes(), type=_Status)
        except (OSError, msgspec.DecodeError):
            named = None
            continue
        if named is not None and status.dataset is not None and status.dataset.manifest:
            named.add(os.path.normpath(status.dataset.manifest))
        if status.status != "running":
            continue
        try:
            record = read_record(path)
        except (OSError, msgspec.DecodeError):
            continue
        if record.status != "running" or _staging_left(run_out_dir, record.run_id):
            continue  # a staging folder still there was judged above, or could not be
        with lock_if_free(run_out_dir, record.plugin.id) as free:
            # a held lock may be a newer run's: then a runner known dead on this machine
            if not free and not runner_gone(record, run_out_dir):
                continue
            try:
                record = read_record(path)  # again, now that its runner cannot write it
            except (OSError, msgspec.DecodeError):
                continue
            if record.status == "running":
                done.append(
                    _abandon(run_out_dir, record)
                    or Cleaned(f"marked run {record.run_id} abandoned (its runner is gone)")
                )
    if paths is not None and named is not None:
        done.extend(_remove_unnamed_manifests(run_out_dir, named))
    return done


def finish_dead_run(
    record_path: Path, staging_dir: Path, status: Status, error: ErrorInfo
) -> RunRecord | None:
    """Finish a run whose runner died from a signal, for the supervisor that outlived it.

    The `running` record becomes final (`status`, `error`), a promotion the
    runner had started is rolled back (the record does not say `succeeded`, so
    the previous output stays), its staging folder is removed and the log says
    why. Done under the plugin's lock: when another run of the plugin already
    holds it, that run has finished this one (or will), and nothing is done
    here. Returns the record, or None when there was nothing to finish (the
    record already final, or unreadable).
    """
    run_out_dir = staging_dir.parent.parent
    record = _record_of(run_out_dir, staging_dir.name)
    plugins = [record.plugin.id] if record is not None else []
    if record is None and staging_dir.is_dir():
        plugins = _plugins_in(staging_dir)
    with ExitStack() as held:
        for plugin in plugins:
            if not held.enter_context(lock_if_free(run_out_dir, plugin)):
                return None
        try:
            record = read_record(record_path)
        except (OSError, msgspec.DecodeError):
            record = None
        if record is None or record.status != "succeeded":
            try:
                roll_back(run_out_dir, staging_dir.name)
            except OSError:
                return None  # the previous output is in the staging: `runs clean` says so
        if record is None or record.status != "running":
            remove_tree(staging_dir)
            with contextlib.suppress(OSError):
                staging_dir.parent.rmdir()
            return None
        finished = utc_now()
        record.status = status
        record.error = error
        record.exit_code = None
        record.finished_at = iso(finished)
        with contextlib.suppress(ValueError):
            started = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
            record.duration_s = round((finished - started).total_seconds(), 3)
        if record.log:
            with (
                contextlib.suppress(OSError),
                open_append(Path(record.run_out_dir) / record.log) as log,
            ):
                log.write(f"[mdivicom] {error.message}\n".encode())
        finished_record: RunRecord | None = record
        try:
            rewrite_record(record_path, record)
        except OSError:
            finished_record = None
    # final and unlocked: what is left is debris the next run or `runs clean` says so
    remove_tree(staging_dir)
    with contextlib.suppress(OSError):
        staging_dir.parent.rmdir()  # `_staging/` itself, when it is now empty
    return finished_record
