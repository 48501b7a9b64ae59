"""Ctrl-C and SIGTERM as one thing: a KeyboardInterrupt that says which it was.

Runs and batches stop the same way whether a person pressed Ctrl-C or a
scheduler sent SIGTERM; the records only differ in naming the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: per signal, the handlers the runner's blocks replaced, outermost first
_replaced: dict[int, list[Any]] = {sig: [] for sig in _SIGNALS}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so both take the same path."""


def signal_of(exc: BaseException) -> signal.Signals:
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


def stopped_by_sigterm(exc: BaseException | None) -> bool:
    """Whether `exc` or an exception it was raised from is Terminated: a batch's
    interruption is re-raised by each layer it passes (`raise ... from exc`)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, Terminated):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interrupt_name(exc: BaseException | None) -> str:
    """What stopped the work, as records and messages name it."""
    return "SIGTERM" if stopped_by_sigterm(exc) else "Ctrl-C (SIGINT)"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    with _handling({signal.SIGTERM: handler}):
        yield


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM during the block; the caller re-raises afterwards."""
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
    """Within a `deferred_interrupts` block, let Ctrl-C and SIGTERM raise again for a
    while: code that may hang (a site's hook) can then be stopped, and the caller
    decides what that means for the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    with _handling({signal.SIGINT: signal.default_int_handler, signal.SIGTERM: terminate}):
        yield


@contextlib.contextmanager
def signals_seen() -> Iterator[list[int]]:
    """The SIGINT/SIGTERM that arrive during the block; the handlers in place still act.

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
    (also when code in the block replaced them meanwhile)."""
    previous = {sig: signal.getsignal(sig) for sig in handlers}
    for sig, handler in handlers.items():
        _replaced[sig].append(previous[sig])
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
