"""Facts about this interpreter that records and the python backend report alike."""

from __future__ import annotations

import sys


def python_version() -> str:
    info = sys.version_info
    return f"{info.major}.{info.minor}.{info.micro}"


def interpreter() -> str:
    """`CPython 3.11.7`: the python backend's engine as a record names it."""
    name = {"cpython": "CPython", "pypy": "PyPy"}.get(
        sys.implementation.name, sys.implementation.name
    )
    return f"{name} {python_version()}"


def die_with_parent(signum: int) -> None:
    """Ask Linux to send `signum` to this process when its parent dies.

    A worker or an isolated plugin child must not outlive a runner killed
    with SIGKILL; elsewhere this does nothing (the record still shows the run
    as abandoned).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts).

    The record store and the container backend ask it of a runner that wrote a
    record or labelled a container: a gone runner's leftovers are fair to clear.
    """
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
