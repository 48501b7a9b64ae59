"""Files that survive a crash and a power cut whole: the one way records are written.

Every run record, dataset manifest, batch summary, promotion marker and
result-bundle sidecar goes through `write_atomic`. A rename alone keeps a
reader (or a killed writer) from seeing half a file, but not a power cut:
the kernel may put the rename on disk before the data, leaving an empty
record, or not put the rename there at all, losing a record the user was
told about. So, as git, SQLite and PostgreSQL do, the data is fsynced
before the rename and the folder after it.

A writer killed half way leaves its temporary file behind, named for what it
was: `.<name>.<random>.tmp`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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


def _new_partial(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, opened for writing.

    Its name is new for every write: two processes writing the same record
    at once (`runs clean` and a supervisor finishing a dead run) each write
    their own whole file, where one shared name let the second truncate the
    first's. Made with the mode a plain write gives (the umask decides), so a
    record in a group-shared --out stays readable to the group.
    """
    while True:
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, partial


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all, and durably: through a temporary file that
    is fsynced, renamed over `path`, and the folder fsynced after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = _new_partial(path)
    try:
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(partial, path)
    except BaseException:
        # a full disk must not keep half a file (and its blocks) behind
        partial.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
