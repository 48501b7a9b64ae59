"""Output isolation: the per-plugin lock, the staging folder and promotion.

A plugin writes into `<out>/_staging/<run_id>/<id>/`, never into `<out>/<id>/`.
Only a successful run replaces `<out>/<id>/`, by renames within one file system,
and with `--overwrite` the previous output is removed only after the new one is
in place. So a failed, interrupted or timed-out run cannot damage what was there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mdivicomtools.common.safefs import Removal, remove_tree
from mdivicomtools.errors import RecordNotWritten, UsageError
from mdivicomtools.model.layout import STAGING_DIR, runs_dir, staging_root


class OutputLocked(UsageError):
    """Another run of the same plugin is writing into the same --out."""


def _open_lock(run_out_dir: Path, plugin_id: str) -> IO[bytes]:
    """The plugin's lock file, opened for flock (which needs no write access).

    Made when missing; opened read-only when it exists but another user's
    umask left it unwritable for this one (a group-shared --out): refusing
    the run for that would block every user but the first.
    """
    runs = runs_dir(run_out_dir)
    lock_path = runs / f".{plugin_id}.lock"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        try:
            return lock_path.open("a+b")
        except PermissionError:
            return lock_path.open("rb")
    except OSError as exc:
        # the lock lives beside the records: where it cannot be made, no record can
        # be either, so nothing is started (a read-only mount, a path through a file)
        raise RecordNotWritten(
            f"the run was not started: cannot write into --out {str(run_out_dir)!r} "
            f"({exc.strerror or exc}: {exc.filename or lock_path}); choose a writable --out"
        ) from None


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
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def create_staging(run_out_dir: Path, run_id: str, plugin_id: str) -> Path:
    """`<out>/_staging/<run_id>/<id>/`; the run folder is private to the user (0700),
    as it may hold the plugin's unredacted config."""
    root = staging_root(run_out_dir, run_id)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(mode=0o700)
    staging = root / plugin_id
    staging.mkdir()
    return staging


def discard_staging(run_out_dir: Path, run_id: str) -> Removal:
    """Remove `_staging/<run_id>/`, also where the plugin made folders read-only.

    Returns what happened, so a caller can say what is left instead of "removed";
    whatever is left is debris the next run or `runs clean` tries again.
    """
    removal = remove_tree(staging_root(run_out_dir, run_id))
    with contextlib.suppress(OSError):
        (run_out_dir / STAGING_DIR).rmdir()  # only when no other run is staging
    return removal


def promote(staging: Path, target: Path) -> None:
    """Move the staged output to `target`, replacing an existing one only at the end.

    The previous output is moved into the run's staging folder first, so what
    cannot be removed of it (a folder made read-only) is left with the staging,
    where `discard_staging` tries again and reports it.
    """
    previous = staging.parent / f".previous-{target.name}"
    had_previous = target.exists()
    if had_previous:
        os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        if had_previous:
            os.replace(previous, target)
        raise
    if had_previous:
        remove_tree(previous)
