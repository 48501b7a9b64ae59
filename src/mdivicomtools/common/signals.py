"""Ctrl-C and SIGTERM as one thing: a KeyboardInterrupt that says which it was.

Runs and batches stop the same way whether a person pressed Ctrl-C or a
scheduler sent SIGTERM; the records only differ in naming the signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so both take the same path."""


def signal_of(exc: BaseException) -> signal.Signals:
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM during the block; the caller re-raises afterwards."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, terminate),
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def noting(handler: Any) -> Any:
        def note(signum: int, frame: Any) -> Any:
            seen.append(signum)
            return handler(signum, frame)

        return note

    for sig, handler in previous.items():
        if callable(handler):  # SIG_DFL/SIG_IGN raise nothing to tell apart
            signal.signal(sig, noting(handler))
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
