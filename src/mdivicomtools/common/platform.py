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
    """Whether a process with this pid is still running (one we may not signal counts).

    The record store and the container backend ask it of a runner that wrote a
    record or labelled a container: a gone runner's leftovers are fair to clear.
    A zombie counts as gone: it has exited and released its files and locks,
    only its parent has not collected its exit status yet. A Dask worker killed
    mid-run stays one until its nanny notices, and the scheduler may already
    have given its session to another worker, whose run must see the dead try
    as dead.
    """
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether Linux lists `pid` as a zombie (elsewhere: never known, so False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # `pid (comm) state ...`: comm may hold spaces and parentheses, the state
    # follows the last closing one
    state = stat.rfind(b")") + 2
    return stat[state : state + 1] == b"Z"
