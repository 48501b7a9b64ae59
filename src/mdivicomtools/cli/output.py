"""Helpers every command uses to print: JSON documents and warnings."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click


def echo_json(value: Any) -> None:
    """One JSON document on stdout, nothing else (the contract of every --json).

    msgspec encodes several times faster than json.dumps with indent, which is
    pure Python; with hundreds of plugins that shows in `plugins list --json`.
    """
    from mdivicomtools.common.jsonio import pretty  # msgspec: not needed for --help

    # bytes go to the binary stream as they are: JSON is UTF-8 (RFC 8259) whatever
    # the locale, and a Latin-1 stdout could not encode a description in Japanese
    click.echo(pretty(value), nl=False)
    from mdivicomtools.common import supervision

    supervision.printed()


def tolerate_any_text() -> None:
    """Let stdout show text its encoding cannot hold as `\\uXXXX`, not fail on it.

    Under a Latin-1 locale (or PYTHONIOENCODING=latin-1) stdout is strict: one
    plugin description with an en dash, a session named in Japanese or a plugin's
    error with an emoji ended `plugins list`, `runs list` or a run's summary in
    `internal error (UnicodeEncodeError ...)`, with exit 1 after the run had
    succeeded. stderr already escapes so. (An ASCII stdout is one click already
    writes UTF-8 to.)
    """
    import codecs

    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None or codecs.lookup(encoding).name == "utf-8":
            continue
        if getattr(stream, "errors", "strict") == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


#: the standard descriptors, with the sys attribute and the mode of each
_STANDARD = ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w"))


def open_closed_standard_streams() -> None:
    """Put /dev/null on each standard descriptor the command was started without.

    A cron line or a daemon's script with `>&-` or `2>&-` starts the command
    with descriptor 1 or 2 closed. Python then leaves `sys.stdout` or
    `sys.stderr` None, and the first descriptor the command opened took the
    free number: a batch's `os.pipe()` became "stderr", whatever was printed
    went into it, and the batch ran no session; a run that had succeeded
    ended in `'NoneType' object has no attribute 'flush'` and exit 1, and a
    plugin's child process inherited whatever file held that number as its
    output. With /dev/null there, what would be printed is dropped, as with
    `>/dev/null`, and the exit code is the command's.
    """
    for fd, name, mode in _STANDARD:
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:  # the lower ones are open, so it took this number but for a race
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, errors="backslashreplace"))  # noqa: SIM115


def silence_standard_streams() -> None:
    """Point stdout and stderr at /dev/null: what is still printed, and the
    interpreter's final flush, then go nowhere instead of failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


@contextlib.contextmanager
def terminal_may_be_gone(interrupted: bool) -> Iterator[None]:
    """Print the lines that end an interrupted command, or drop them when its
    terminal is gone.

    SIGHUP is how a closed terminal (a lost ssh session, a shut window) stops a
    command, and writing to that terminal then fails (EIO): an `internal error`
    with exit 1 replaced the documented 130, with the record already written.
    The lines are dropped instead. A reader of stdout that went away is still
    a BrokenPipeError (exit 141), and a command that was not interrupted still
    fails on a stream it cannot write.
    """
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError:
        if not interrupted:
            raise
        silence_standard_streams()


def warn(messages: Iterable[str]) -> None:
    for message in messages:
        click.echo(f"Warning: {message}", err=True)


class _FastExit:
    requested = False


def request_fast_exit() -> None:
    """Say that everything this command does is done and recorded: `main` may then end
    the process without the interpreter's teardown (freeing every module's objects,
    20-40 ms after a container run), when it runs as the `mdivicom` program."""
    _FastExit.requested = True


def fast_exit_requested() -> bool:
    return _FastExit.requested
