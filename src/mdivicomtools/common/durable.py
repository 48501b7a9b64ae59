"""Files that survive a crash and a power cut whole: the one way records are written.

Every run record, dataset manifest, batch summary, promotion marker and
result-bundle sidecar goes through `write_atomic`. A rename alone keeps a
reader (or a killed writer) from seeing half a file, but not a power cut:
the kernel may put the rename on disk before the data, leaving an empty
record, or not put the rename there at all, losing a record the user was
told about. So, as git, SQLite and PostgreSQL do, the data is fsynced
before the rename and the folder after it.

A writer killed half way leaves its temporary file behind. Its name says
what it was (`.<name>.<random>.tmp`) and it is locked (flock) for as long
as it is being written, so `leftover_writes` can tell one no live process
is writing and `runs clean` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

#: how the temporary file of a write ends; an older release's was `.<name>.tmp`
PARTIAL_SUFFIX = ".tmp"


def sync_folder(folder: Path) -> None:
    """Put `folder`'s entries (a rename or a new file in it) on disk.

    A file system that cannot sync a folder (some network and FUSE mounts
    refuse it with EINVAL) does what it can; that is not an error here.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _locked_partial(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened for writing and locked.

    Its name is new for every write: two processes writing the same record
    at once (`runs clean` and a supervisor finishing a dead run) each write
    their own whole file, where one shared name let the second truncate the
    first's. Made with the mode a plain write gives (the umask decides), so a
    record in a group-shared --out stays readable to the group.
    """
    while True:
        partial = path.with_name(f".{path.name}.{os.urandom(4).hex()}{PARTIAL_SUFFIX}")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        # a cleaner that found it unlocked in between (and so removed it) holds the lock
        # for as long as it judges; once it is ours, a file without a name is no use
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return fd, partial
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `path` whole or not at all, and durably: through a temporary file that
    is fsynced, renamed over `path`, and the folder fsynced after.

    `durable=False` keeps the whole-or-nothing rename for readers but skips both
    fsyncs (10-20 ms on a VM's disk), for a file rewritten often that a later
    durable write replaces (a running batch's summary, after each session).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = _locked_partial(path)
    try:
        with open(fd, "wb", closefd=True) as handle:  # closing releases the lock
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
            os.replace(partial, path)
    except BaseException:
        # a full disk must not keep half a file (and its blocks) behind
        partial.unlink(missing_ok=True)
        raise
    if durable:
        sync_folder(path.parent)


def is_partial(name: str) -> bool:
    """Whether `name` is that of a temporary file `write_atomic` (or an older release's
    version of it) makes."""
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX) and len(name) > 5


def remove_if_abandoned(partial: Path) -> bool:
    """Remove `partial` when no live process is writing it; whether it was removed.

    A writer holds its lock from the moment the file has its name until it is
    renamed; a lock that is free belongs to a writer that died (or to one that
    has not taken it yet, which sees the file gone and makes another). Raises
    OSError when it cannot be removed (another user's folder, say).
    """
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False  # renamed meanwhile: a write that finished
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        found = os.fstat(fd)
        try:
            now = os.lstat(partial)
        except FileNotFoundError:
            return False
        if (now.st_dev, now.st_ino) != (found.st_dev, found.st_ino):
            return False  # another file by that name since: judged the next time
        partial.unlink()
        return True
    finally:
        os.close(fd)


def leftover_writes(folder: Path) -> list[Path]:
    """The temporary files in `folder` (not below it) that a write left, sorted;
    none when the folder is missing or cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if is_partial(e.name) and not e.is_dir()]
    except OSError:
        return []
    return sorted(folder / name for name in names)
