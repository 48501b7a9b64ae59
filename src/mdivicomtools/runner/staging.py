"""Output isolation: the per-plugin lock, the staging folder and promotion.

A plugin writes into `<out>/_staging/<run_id>/<id>/`, never into `<out>/<id>/`.
Only a successful run replaces `<out>/<id>/`, by renames within one file system,
and with `--overwrite` the previous output is removed only after the new one is
in place and the run's final record is written. So a failed, interrupted or
timed-out run cannot damage what was there, and neither can a runner killed
while it promotes: until the record says `succeeded`, what promotion did can be
undone (`roll_back`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mdivicomtools.common.durable import sync_folder, write_atomic
from mdivicomtools.common.safefs import Removal, open_append, open_regular, remove_tree
from mdivicomtools.common.sharing import UMASK_HINT, closed_by_another_user, closed_message
from mdivicomtools.errors import RecordNotWritten, UsageError
from mdivicomtools.model.layout import PROMOTING, STAGING_DIR, runs_dir, staging_root
from mdivicomtools.records.promotion import (
    PREVIOUS,
    foreign_staging,
    previous_output,
    promoting,
)


class OutputLocked(UsageError):
    """Another run of the same plugin is writing into the same --out."""


def _open_lock(run_out_dir: Path, plugin_id: str) -> IO[bytes]:
    """The plugin's lock file, opened for flock (which needs no write access).

    Made when missing; opened read-only when it exists but another user's
    umask left it unwritable for this one (a group-shared --out): refusing
    the run for that would block every user but the first. Never through a
    symlink (another user's, to a file of this one's that it would create).
    """
    runs = runs_dir(run_out_dir)
    lock_path = runs / f".{plugin_id}.lock"
    if plugin_id != os.path.basename(plugin_id) or plugin_id in ("", ".", ".."):
        raise RecordNotWritten(f"{plugin_id!r} names no plugin; no lock is taken for it")
    try:
        runs.mkdir(parents=True, exist_ok=True)
        try:
            return open_append(lock_path)
        except PermissionError:
            return open_regular(lock_path)
    except OSError as exc:
        raise _not_writable(run_out_dir, lock_path, exc) from None


def _not_writable(run_out_dir: Path, lock_path: Path, exc: OSError) -> RecordNotWritten:
    """Why no lock (and so no record) can be had: the lock lives beside the records, so
    where it cannot be opened nothing is started (a read-only mount, a path through a
    file). In a shared --out it is mostly another user's umask (077, or 022 for a
    `_runs/` they made), which "choose a writable --out" sent the user away from."""
    runs = lock_path.parent
    if os.path.islink(lock_path):  # someone else's (a shared --out): never followed
        return RecordNotWritten(
            f"the run was not started: the lock {str(lock_path)!r} is a symbolic link to "
            f"{os.readlink(lock_path)!r}, not the file mdivicom makes; remove it"
        )
    if closed_by_another_user(runs, os.W_OK | os.X_OK):
        return _closed(f"write into {str(runs)!r}", "group-writable (chmod g+rwx)")
    if closed_by_another_user(lock_path, os.R_OK):
        return _closed(f"open the lock {str(lock_path)!r}", "group-readable (chmod g+r)")
    return RecordNotWritten(
        f"the run was not started: cannot write into --out {str(run_out_dir)!r} "
        f"({exc.strerror or exc}: {exc.filename or lock_path}); choose a writable --out"
    )


def _closed(what: str, fix: str) -> RecordNotWritten:
    return RecordNotWritten(closed_message("the run was not started", what, fix))


@contextlib.contextmanager
def plugin_lock(run_out_dir: Path, plugin_id: str) -> Iterator[None]:
    """Hold an exclusive lock on `<out>` for `plugin_id` for the whole run.

    flock is released by the kernel when the process dies, so a killed runner
    never leaves a stale lock behind. Whoever holds it is the only process that
    may promote the plugin's output, or finish or clean up a run of it.
    """
    with _open_lock(run_out_dir, plugin_id) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLocked(
                f"another run of {plugin_id!r} is writing into {str(run_out_dir)!r} right now; "
                "wait for it to finish or choose another --out"
            ) from None
        yield


@contextlib.contextmanager
def lock_if_free(run_out_dir: Path, plugin_id: str) -> Iterator[bool]:
    """The plugin's lock held for the block when nobody holds it (True), else False.

    For deciding that a run is dead and acting on it: with the lock held, no
    run of the plugin is live, so no runner can write the record being judged.
    A lock file that cannot be opened at all gives False too: nothing is known.
    """
    try:
        handle = _open_lock(run_out_dir, plugin_id)
    except RecordNotWritten:
        # a read-only mount: the lock a run left there still locks, read-only (a
        # dead run's staging was passed over as live, and `runs clean` said
        # `0 item(s) cleaned` with exit 0)
        try:
            handle = (runs_dir(run_out_dir) / f".{plugin_id}.lock").open("rb")
        except OSError:
            yield False
            return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def check_staging_writable(run_out_dir: Path) -> None:
    """Raise RecordNotWritten (exit 74) when this user cannot make a run's record in
    `<out>/_runs/` or its folder in `<out>/_staging/`, before the run's record exists.

    In a shared --out, a colleague's umask 077 leaves `_staging/` private to
    them: the run was started, then failed making its folder there, leaving a
    failed record on every try. It is an --out this user cannot write into.
    """
    runs = runs_dir(run_out_dir)
    # its lock opens read-only all the same, but no record can be made in it
    if closed_by_another_user(runs, os.W_OK | os.X_OK):
        raise _closed(f"write into {str(runs)!r}", "group-writable (chmod g+rwx)")
    staging = run_out_dir / STAGING_DIR
    foreign = foreign_staging(staging)
    if foreign is not None:
        raise RecordNotWritten(
            f"the run was not started: {str(staging)!r} is not the folder mdivicom makes "
            f"({foreign}), and what a run stages there would not stay in --out; remove it"
        )
    try:
        usable = not staging.exists() or os.access(staging, os.W_OK | os.X_OK)
    except OSError:
        usable = False
    if not usable:
        raise RecordNotWritten(
            f"the run was not started: cannot write into {str(staging)!r}, which another "
            "user made private; ask its owner to make it group-writable (chmod g+rwx), "
            f"or to remove it when empty ({UMASK_HINT})"
        )


#: beside PROMOTING: `dev:inode` of the output folder the run promoted, so that undoing
#: the promotion never takes back or overwrites a later run's output in its place (one
#: made while the promoted folder still existed; an inode number freed with it may be
#: given to a folder made after, which this cannot tell from the promoted one)
PROMOTED = ".promoted"

#: how often `create_staging` makes `_staging/` again when a run that ended removed it
STAGING_TRIES = 20


def create_staging(run_out_dir: Path, run_id: str, plugin_id: str) -> Path:
    """`<out>/_staging/<run_id>/<id>/`; the run folder is private to the user (0700),
    as it may hold the plugin's unredacted config.

    `_staging/` is shared: a run of another plugin that ends (or `runs clean`)
    removes it when it is empty, which it is between this run's making it and
    making its own folder in it; that run then failed with FileNotFoundError.
    """
    root = staging_root(run_out_dir, run_id)
    for attempt in range(STAGING_TRIES):
        root.parent.mkdir(parents=True, exist_ok=True)
        foreign = foreign_staging(root.parent)
        if foreign is not None:  # made a link since check_staging_writable
            raise OSError(f"{root.parent} is not the folder mdivicom makes ({foreign})")
        try:
            root.mkdir(mode=0o700)
            break
        except FileNotFoundError:
            if attempt == STAGING_TRIES - 1:
                raise
    staging = root / plugin_id
    staging.mkdir()
    return staging


def _promoting(root: Path) -> bool:
    """Whether the run whose staging folder is `root` has a promotion to commit (False
    when even that cannot be told: a `_staging/` another user made private)."""
    try:
        return (root / PROMOTING).exists()
    except OSError:
        return False


def discard_staging(run_out_dir: Path, run_id: str, *, keep_promotion: bool = False) -> Removal:
    """Remove `_staging/<run_id>/`, also where the plugin made folders read-only.

    With `keep_promotion`, what `roll_back` needs (the marker and the previous
    output) stays until the run's record is final. Returns what happened, so a
    caller can say what is left instead of "removed"; whatever is left is
    debris the next run or `runs clean` tries again.
    """
    root = staging_root(run_out_dir, run_id)
    if keep_promotion and _promoting(root):
        left: list[str] = []
        for entry in root.iterdir():
            if entry.name not in (PROMOTING, PROMOTED) and not entry.name.startswith(PREVIOUS):
                left.extend(remove_tree(entry).left)
        return Removal(path=str(root), left=left)
    with contextlib.suppress(OSError):
        (root / PROMOTING).unlink()  # first: what follows can no longer be rolled back
    removal = remove_tree(root)
    with contextlib.suppress(OSError):
        (run_out_dir / STAGING_DIR).rmdir()  # only when no other run is staging
    return removal


def _rename(source: Path, destination: Path) -> None:
    """`os.replace`, also for a folder its owner may not write to.

    Moving a folder into another folder rewrites its `..` entry, which needs
    write permission on the folder itself: an output the plugin left read-only
    (`chmod 555`, a `cp -a` of a read-only dataset folder) could not be promoted
    and the run failed after the plugin had succeeded. Such a folder is made
    writable for the move and gets its mode back at once.
    """
    try:
        os.replace(source, destination)
        return
    except PermissionError:
        mode = os.lstat(source).st_mode
        if not stat.S_ISDIR(mode) or mode & stat.S_IWUSR:
            raise
    os.chmod(source, stat.S_IMODE(mode) | stat.S_IWUSR)
    try:
        os.replace(source, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.chmod(source, stat.S_IMODE(mode))
        raise
    os.chmod(destination, stat.S_IMODE(mode))


def promote(staging: Path, target: Path) -> None:
    """Move the staged output to `target`, keeping the previous one to roll back to.

    The previous output is moved into the run's staging folder, beside a marker
    written first, and stays there until `discard_staging` after the run's final
    record; what cannot be removed of it then (a folder made read-only) is left
    with the staging, where `runs clean` tries again and reports it.
    """
    root = staging.parent
    marker = root / PROMOTING
    # which folder is this run's output, wherever it is moved (a rename keeps the inode)
    write_atomic(root / PROMOTED, _identity(staging).encode())
    write_atomic(marker, target.name.encode())  # whole or absent, however the runner dies
    previous = previous_output(root, target.name)
    had_previous = target.exists()
    try:
        if had_previous:
            _rename(target, previous)
        try:
            _rename(staging, target)
        except BaseException:
            if had_previous:
                _rename(previous, target)
            raise
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    # on disk before the record that says `succeeded`: after a power cut, a record
    # naming outputs whose folder was never renamed into place
    sync_folder(target.parent)
    sync_folder(root)


def roll_back(run_out_dir: Path, run_id: str) -> str | None:
    """Undo the promotion of a run that ended without a `succeeded` record.

    Its runner was killed between promotion and its final record (or the record
    could not be written): the plugin's output is put back as it was before the
    run, and the new one goes back into the staging folder, to be removed with
    it. Every step is a rename decided from what is on disk, so a rollback that
    is itself cut short is finished by the next one. Returns what was done, or
    None when the run promoted nothing; raises OSError when a rename fails (then
    the staging folder must stay: it holds the previous output).
    """
    root = staging_root(run_out_dir, run_id)
    marker = root / PROMOTING
    plugin_id = promoting(root)  # an older release's run has no marker, only .previous-<id>
    if plugin_id is None:
        return None
    if not plugin_id:  # never written whole: no rename had begun
        marker.unlink()
        return None
    if plugin_id != Path(plugin_id).name or plugin_id.startswith((".", "_")):
        raise OSError(f"{marker} does not name a plugin output ({plugin_id!r})")
    target = run_out_dir / plugin_id
    staged = root / plugin_id
    previous = previous_output(root, plugin_id)
    try:
        promoted: str | None = (root / PROMOTED).read_text(encoding="utf-8")
    except FileNotFoundError:  # a run of an older version
        promoted = None
    ours = promoted is None or _identity(target) == promoted
    moved_new = not os.path.lexists(staged) and os.path.lexists(target) and ours
    if moved_new:
        _rename(target, staged)
    # a later run's output there (another user's run went ahead while this dead run's
    # folder could not be judged) is not this run's to take back, nor to put back over
    restored = os.path.lexists(previous) and not os.path.lexists(target)
    if restored:
        _rename(previous, target)
    (root / PROMOTED).unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    if restored:
        return f"put back the previous output {target}"
    if moved_new:
        return f"took back the output {target} it had promoted"
    if os.path.lexists(target) and not ours:
        return f"left {target} as it is: a later run replaced the output this run promoted"
    return None


def _identity(folder: Path) -> str:
    """`dev:inode` of `folder` (not followed), or "" when it is gone."""
    try:
        info = os.lstat(folder)
    except OSError:
        return ""
    return f"{info.st_dev}:{info.st_ino}"
