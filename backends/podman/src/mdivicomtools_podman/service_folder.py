"""The folder of a private `podman system service`: held locked, swept once free.

A runner killed with SIGKILL never runs the service's stop(): the kernel
stops the service (it dies with its parent), but the folder with its socket
and log stays in the temp folder, one per killed run. So each folder holds a
lock that its runner keeps for its whole life and that the kernel drops when
the process ends, however it ends; a runner starting a service removes the
folders whose lock nobody holds. Folders it cannot open (another user's,
one still being made, or one from a version without the lock) are left as
they are: only a free lock proves a folder is stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "mdivicom-podman-"
LOCK_NAME = "runner.lock"


def sweep(folder: Path) -> list[Path]:
    """Remove the service folders in `folder` whose runner is gone; the ones removed."""
    removed = []
    for candidate in sorted(folder.glob(PREFIX + "*")):
        try:
            fd = os.open(candidate / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its runner is alive
            os.close(fd)
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        os.close(fd)
        if not candidate.exists():
            removed.append(candidate)
    return removed


class ServiceFolder:
    """A new service folder in the temp folder, locked by this process until remove()."""

    def __init__(self) -> None:
        parent = Path(tempfile.gettempdir())
        sweep(parent)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        # locked under another name first: a sweep must never find the lock free
        pending = self.path / f".{LOCK_NAME}.new"
        self._fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.rename(pending, self.path / LOCK_NAME)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)
