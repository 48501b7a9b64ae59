"""sys.stdout and sys.stderr per thread, for code that redirects them while it runs.

The streams belong to the process, but `run_plugin` may be called from several
threads at once (a notebook's thread pool, a Dask worker with several
threads). Swapping them per call (`contextlib.redirect_stdout`) interleaves
across threads: the call that finishes last puts back what another call had
installed, so the caller's own prints went on into a closed run log for the
rest of the session, and one run's output landed in another run's log. Here
the first redirect installs one router for each stream and the last puts the
originals back; in between, each write goes where its own thread asked.

A thread that asked for nothing (a thread the plugin started, the caller's
main thread) writes where the one redirect that `adopts` other threads sends
its writes when exactly one such redirect is active, as a plain swap did; with
several, it cannot be told which run it belongs to, and writes to the
original stream.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_lock = threading.Lock()
#: per thread ident, its redirects, innermost last: (stdout, stderr, adopts)
_active: dict[int, list[tuple[TextIO, TextIO, bool]]] = {}
#: the streams in place before the first redirect, put back after the last one
_originals: list[TextIO] = []


class _Router:
    """Stands in for sys.stdout or sys.stderr while any thread redirects it."""

    def __init__(self, index: int) -> None:
        self._index = index  # 0 stdout, 1 stderr

    def _target(self) -> Any:
        own = _active.get(threading.get_ident())
        if own:
            return own[-1][self._index]
        adopting = [stack[-1] for stack in list(_active.values()) if stack and stack[-1][2]]
        if len(adopting) == 1:
            return adopting[0][self._index]
        originals = _originals
        if originals:
            return originals[self._index]
        # kept past the last redirect (a logging handler made during a run): the
        # process's stream now
        current = sys.stderr if self._index else sys.stdout
        if isinstance(current, _Router):
            return sys.__stderr__ if self._index else sys.__stdout__
        return current

    def write(self, text: str) -> int:
        result: int = self._target().write(text)
        return result

    def writelines(self, lines: list[str]) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty(), fileno(), buffer, ...: the target's
        return getattr(self._target(), name)


@contextlib.contextmanager
def redirected(stdout: TextIO, stderr: TextIO, *, adopt: bool = False) -> Iterator[None]:
    """Within the block, this thread's sys.stdout and sys.stderr write to these.

    `adopt`: threads that redirected nothing write here too while this is the
    only adopting redirect (an in-process plugin's own threads).
    """
    ident = threading.get_ident()
    stdout, stderr = _resolved(stdout), _resolved(stderr)
    with _lock:
        if not _active:
            _originals[:] = [sys.stdout, sys.stderr]
            sys.stdout, sys.stderr = _Router(0), _Router(1)  # type: ignore[assignment]
        _active.setdefault(ident, []).append((stdout, stderr, adopt))
    try:
        yield
    finally:
        with _lock:
            stack = _active[ident]
            stack.pop()
            if not stack:
                del _active[ident]
            if not _active:
                sys.stdout, sys.stderr = _originals
                _originals.clear()


def _after_fork_in_child() -> None:
    """A process an in-process plugin forks (multiprocessing's fork workers) starts
    with the streams of the process it was forked from, and with any lock another
    thread held at that moment held for ever: a run log's pump thread writing
    just then left the worker hanging at its first print or at exit. The child
    writes to the process's own streams instead: descriptor 1 is the run's
    capture pipe there, which the parent still logs."""
    global _lock, _descriptor_1_depth
    _lock = threading.Lock()
    _descriptor_1_depth = 0
    if _originals:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # type: ignore[assignment]
        _originals.clear()
    _active.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolved(stream: TextIO) -> TextIO:
    """The stream a router currently means for this thread (a router asked to
    write to itself would never end)."""
    while isinstance(stream, _Router):
        stream = stream._target()
    return stream


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """This thread's prints go to stderr during the block (what loading a plugin or
    a hook module prints must not land in `--json` output).

    On the main thread, so does what reaches descriptor 1 past sys.stdout: a C
    extension's banner on import, a `subprocess.run` that computes a version,
    an `os.write(1, ...)` in get_plugin() came before the JSON document. Other
    threads leave the descriptor alone: it is the process's, and the main
    thread may be writing the JSON to it.
    """
    stderr = sys.stderr
    with _descriptor_1_to_stderr(), redirected(stderr, stderr):
        yield


#: how deep the main thread is in blocks that moved descriptor 1 to stderr: an inner
#: block (each plugin's, within the whole discovery's) finds it moved already
_descriptor_1_depth = 0


@contextlib.contextmanager
def _descriptor_1_to_stderr() -> Iterator[None]:
    global _descriptor_1_depth
    if threading.current_thread() is not threading.main_thread():
        yield  # the descriptor is the process's, and the main thread may be writing to it
        return
    saved = -1
    if not _descriptor_1_depth:
        _flush(sys.stdout, sys.__stdout__)  # what was printed before goes where it was
        with contextlib.suppress(OSError):  # no descriptor 1 or 2: nothing to move
            saved = os.dup(1)
            try:
                os.dup2(2, 1)
            except OSError:
                os.close(saved)
                saved = -1
    _descriptor_1_depth += 1
    try:
        yield
    finally:
        _descriptor_1_depth -= 1
        if saved >= 0:
            _flush(sys.__stdout__)  # what reached it in the block belongs to stderr
            os.dup2(saved, 1)
            os.close(saved)


def _flush(*streams: TextIO | None) -> None:
    for stream in streams:
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
