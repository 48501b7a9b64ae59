"""What an in-process plugin may change of the process it shares, saved and put back.

A plugin that sets `os.environ["OMP_NUM_THREADS"]`, puts its own folder first
on `sys.path` or calls `logging.basicConfig(force=True)` changes the process
for everything that runs after it there. With `mdivicom run` that is nothing;
but a Dask worker runs session after session in one process, and a notebook
calls `run_plugin` again and again: the next session's plugin saw the first
one's variables, imported from its folder and logged through its handlers,
so a batch's results depended on its executor and on the order of its
sessions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys


def current_umask() -> int:
    """This process's umask. Linux tells it in /proc/self/status; elsewhere it can only
    be read by setting another and putting it back at once (a file another thread
    makes in between gets the mask set, 077: closed, never opened up)."""
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class ProcessState:
    """The environment variables, `sys.path`, the root logger's handlers and
    level, the working folder and the umask, as they were when saved.

    The umask is a security setting: a plugin's `os.umask(0)` left every file the
    runner made after it world-writable, its own record first (any local user could
    rewrite the sha256s `verify` compares with), then every later run's outputs and
    records in that process.
    """

    def __init__(self) -> None:
        self._umask = current_umask()
        self._environ = dict(os.environ)
        self._path = list(sys.path)
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        self._level = root.level
        self._cwd: str | None = None
        with contextlib.suppress(OSError):  # a working folder removed meanwhile
            self._cwd = os.getcwd()

    def restore(self) -> None:
        os.umask(self._umask)
        for name in set(os.environ) - set(self._environ):
            os.environ.pop(name, None)
        for name, value in self._environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        if sys.path != self._path:
            sys.path[:] = self._path
        root = logging.getLogger()
        if root.handlers != self._handlers:
            # a handler the plugin added is closed (an open log file), the caller's
            # are put back as they were, in their order
            for handler in root.handlers:
                if handler not in self._handlers:
                    root.removeHandler(handler)
                    handler.close()
            root.handlers[:] = self._handlers
        root.setLevel(self._level)
        if self._cwd is not None:
            with contextlib.suppress(OSError):
                os.chdir(self._cwd)
