"""Ctrl-C, SIGTERM, SIGHUP and SIGQUIT as one thing: a KeyboardInterrupt that says
which it was.

Runs and batches stop the same way whether a person pressed Ctrl-C (or
Ctrl-\\, SIGQUIT), a scheduler sent SIGTERM or the terminal was closed
(SIGHUP); the records only differ in naming the signal. SIGHUP and SIGQUIT
left to their default killed the runner outright: its container went on
running, and a batch wrote no summary. The docker and podman CLIs pass
SIGQUIT on to the container as they pass SIGTERM, and the supervisor already
recorded a run it killed as `interrupted`: it asks the work to stop, so the
runner stops it as it stops on SIGTERM. A SIGHUP or SIGQUIT the process
inherited ignored (`nohup`; a shell's background job ignores SIGQUIT) stays
ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: the signals that stop work, Ctrl-C first; the others raise Terminated
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: the signals that raise Terminated
_TERMINATING = _SIGNALS[1:]
#: what stops work unless the process was started with it ignored (`nohup`, `&`)
_UNLESS_IGNORED = frozenset({signal.SIGHUP, signal.SIGQUIT})
#: per signal, the handlers the runner's blocks replaced, outermost first
_replaced: dict[int, list[Any]] = {sig: [] for sig in _SIGNALS}


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or SIGQUIT, raised where Ctrl-C would be so all take the same path."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signal.Signals(signum)


def interruption(signals: Iterable[int]) -> KeyboardInterrupt:
    """The interruption for the signals that arrived: SIGTERM over SIGHUP over SIGQUIT
    over Ctrl-C, as a scheduler's stop says the most about why the work ended."""
    arrived = set(signals)
    for signum in _TERMINATING:
        if signum in arrived:
            return Terminated(signum)
    return KeyboardInterrupt()


def signal_of(exc: BaseException) -> signal.Signals:
    return exc.signum if isinstance(exc, Terminated) else signal.SIGINT


def _terminated_by(exc: BaseException | None) -> Terminated | None:
    """`exc` or the exception it was raised from that is Terminated: a batch's
    interruption is re-raised by each layer it passes (`raise ... from exc`)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, Terminated):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def interrupt_name(exc: BaseException | None) -> str:
    """What stopped the work, as records and messages name it."""
    terminated = _terminated_by(exc)
    return "Ctrl-C (SIGINT)" if terminated is None else terminated.signum.name


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM, SIGHUP and SIGQUIT raise Terminated in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _handling(dict.fromkeys(_TERMINATING, _raise_terminated)):
        yield


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold the signals that stop work during the block; the caller re-raises afterwards."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum: int, frame: object) -> None:
        pending.append(signum)

    with _handling(dict.fromkeys(_SIGNALS, handler)):
        yield pending


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within a `deferred_interrupts` block, let the signals that stop work raise again
    for a while: code that may hang (a site's hook) can then be stopped, and the
    caller decides what that means for the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {
        signal.SIGINT: signal.default_int_handler,
        **dict.fromkeys(_TERMINATING, _raise_terminated),
    }
    with _handling(handlers):
        yield


@contextlib.contextmanager
def signals_seen() -> Iterator[list[int]]:
    """The signals that stop work that arrive during the block; the handlers in place act.

    A KeyboardInterrupt is the runner's to record as `interrupted` only when a
    signal raised it: a plugin that raises one itself has failed (as it does
    under --isolate), and a backend whose execute() caught the one a signal
    raised and returned must not turn Ctrl-C into an ordinary failure. Signals
    reach the main thread only, so code run in another thread (a Dask worker)
    gets no list to fill. The handlers in place before are put back afterwards,
    also when the code in the block replaced them.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def noting(handler: Any) -> Any:
        if not callable(handler):  # SIG_DFL/SIG_IGN raise nothing to tell apart
            return handler

        def note(signum: int, frame: Any) -> Any:
            seen.append(signum)
            return handler(signum, frame)

        return note

    with _handling({sig: noting(signal.getsignal(sig)) for sig in _SIGNALS}):
        yield seen


@contextlib.contextmanager
def _handling(handlers: dict[signal.Signals, Callable[[int, Any], Any] | Any]) -> Iterator[None]:
    """Install these handlers for the block, then put back the ones they replaced
    (also when code in the block replaced them meanwhile). A SIGHUP or SIGQUIT the
    process ignores (`nohup mdivicom ...`, a shell's background job) is left ignored."""
    previous = {sig: signal.getsignal(sig) for sig in handlers}
    for sig, handler in handlers.items():
        _replaced[sig].append(previous[sig])
        if sig in _UNLESS_IGNORED and previous[sig] is signal.SIG_IGN:
            continue
        if handler is not None:  # None: a handler not installed from Python, left as is
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            _replaced[sig].pop()
            if old is not None:  # None: a handler not installed from Python
                signal.signal(sig, old)


# -- a process forked while the runner's handlers are in place --------------------
#
# A process an in-process plugin forks (multiprocessing's fork workers) is the
# plugin's, and takes signals as the plugin's own code would: with the handlers
# in place before the runner's. With the runner's, SIGTERM raised Terminated in
# the worker wherever it was, which could send it back up the plugin's stack
# into the runner as a second run (a `Pool` ends its workers with SIGTERM); and
# a SIGTERM sent before the new process first ran was lost with the Python-level
# flag that fork clears, leaving `Pool.terminate()` waiting for ever on a worker
# that no longer got it. Both signals are blocked across the fork, so one sent
# to the new process waits until its handlers are the plugin's.

#: per forking thread, its signal mask before the fork
_forking = threading.local()


def _before_fork() -> None:
    with contextlib.suppress(OSError, ValueError):
        _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


def _after_fork_in_parent() -> None:
    mask = getattr(_forking, "mask", None)
    if mask is not None:
        _forking.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _after_fork_in_child() -> None:
    for sig, replaced in _replaced.items():
        if replaced and replaced[0] is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, replaced[0])
    _after_fork_in_parent()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
