"""The run log, `_runs/<run_id>.log`: the plugin's output, kept whole.

Output is also echoed live to a terminal stream (stderr by default), so the
user watches the plugin work while stdout stays free for `--json`.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TextIO

from mdivicomtools.common.safefs import open_append
from mdivicomtools.common.streams import redirected
from mdivicomtools.common.text import terminal_output
from mdivicomtools.errors import on_command_line
from mdivicomtools.execution.lines import LineJoiner
from mdivicomtools.execution.outputpipe import OutputPipe

#: the streams of an in-process plugin: sys.stdout/sys.stderr, and descriptors 1 and 2
PYTHON_STREAMS, DESCRIPTORS = 0, 1


class RunLog:
    """An append-only log file with an optional live echo; safe across threads."""

    def __init__(
        self, path: Path, echo: TextIO | None = None, echo_diagnostics: bool = False
    ) -> None:
        self.path = path
        self.echo = echo
        self.echo_diagnostics = echo_diagnostics
        self._lock = threading.Lock()
        self._file: IO[bytes] = open_append(path)
        #: why the file stopped receiving output (a full disk), or None; a log
        #: that cannot be written never stops the run or its record
        self.lost: str | None = None
        self._closed = False
        self._lines = LineJoiner()
        #: whether the last bytes written to the file, and to the echo, left a line
        #: open: a last write without a newline, or a line longer than MAX_PARTIAL
        #: written in pieces, which end_lines() has nothing left of to end
        self._open_in_file = False
        self._open_in_echo = False

    def write(self, data: str | bytes) -> None:
        raw = _log_bytes(data)
        with self._lock:
            self._write_locked(raw)

    def write_lines(self, stream: int, data: str | bytes) -> None:
        """Write what `stream` (one of several writing at once) wrote, whole lines only:
        its partial line waits for its end, or for end_lines()."""
        raw = _log_bytes(data)
        with self._lock:
            self._write_locked(self._lines.feed(stream, raw))

    def end_lines(self, stream: int | None = None) -> None:
        """Write the partial line write_lines() holds of `stream` (of every stream if
        None), ended: that stream's writers are done, the others may not be."""
        with self._lock:
            rest = self._lines.flush(None if stream is None else (stream,))
            self._write_locked(rest + b"\n" if rest else rest)

    def end_line(self) -> None:
        """End the line the plugin's output left open, in the file and on the terminal.

        Called once the plugin's output is over: what follows (a traceback, a
        hook's failure, the runner's next progress line on the same terminal)
        then starts a line of its own instead of being glued to the plugin's last
        unterminated one.
        """
        with self._lock:
            self._end_open_line_locked(echo=True)

    def _end_open_line_locked(self, *, echo: bool) -> None:
        if self._closed:
            return
        if self._open_in_file:
            self._to_file(b"\n")
        if echo and self._open_in_echo and self.echo is not None:
            self._to_echo(b"\n")

    def _write_locked(self, raw: bytes) -> None:
        if not raw or self._closed:
            return  # closed: a process the plugin left behind still writing after the run
        self._to_file(raw)
        if self.echo is not None:
            self._to_echo(raw)

    def _to_echo(self, raw: bytes) -> None:
        assert self.echo is not None
        try:
            # escape sequences act on the terminal: shown as text there, kept in the file
            self.echo.write(terminal_output(raw.decode("utf-8", "replace")))
            self.echo.flush()
        except (OSError, ValueError):
            self.echo = None  # the terminal went away; keep logging to the file
            return
        self._open_in_echo = not raw.endswith((b"\n", b"\r"))

    def diagnostic(self, text: str) -> None:
        """A traceback or similar detail: always in the log file, on the terminal only
        when asked (`-v`); the run's summary already names the error in one line.
        It starts a line of its own, after the partial lines the plugin left."""
        raw = text.encode("utf-8", "replace")
        with self._lock:
            # after what the plugin wrote before it, on a line of its own
            rest = self._lines.flush()
            self._write_locked(rest + b"\n" if rest else rest)
            self._end_open_line_locked(echo=self.echo_diagnostics)
            if self.echo_diagnostics:
                self._write_locked(raw)
            elif not self._closed:
                self._to_file(raw)

    def _to_file(self, raw: bytes) -> None:
        """Write to the log file unless writing it already failed: a full disk costs
        the log its tail (`lost`, a warning in the record), never the run's record."""
        if self.lost is not None:
            return
        try:
            self._file.write(raw)
            self._file.flush()
        except OSError as exc:
            self.lost = f"writing {self.path.name} failed: {exc.strerror or exc}"
            return
        if raw:
            self._open_in_file = not raw.endswith((b"\n", b"\r"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            try:
                self._file.close()
            except OSError as exc:  # the last flush on a full disk
                self.lost = self.lost or f"closing {self.path.name} failed: {exc.strerror or exc}"

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def capture_python_streams(self) -> Iterator[None]:
        """Route sys.stdout and sys.stderr of in-process plugin code into the log.

        Only Python-level writes are caught here; what C code or a subprocess
        writes to file descriptors 1 and 2 is caught by capture_stdout_fd.
        """
        tee = _LogStream(self)
        try:
            # per thread: runs in other threads keep their own (common/streams.py)
            with redirected(tee, tee, adopt=True):  # type: ignore[arg-type]
                yield
        finally:
            self.end_lines(PYTHON_STREAMS)

    @contextlib.contextmanager
    def capture_stdout_fd(self) -> Iterator[None]:
        """Route what reaches file descriptors 1 and 2 during the block into the log.

        A subprocess an in-process plugin starts (ffmpeg, sox) or its C code
        writes there, past sys.stdout and sys.stderr. On descriptor 1 that landed
        in the middle of `--json` output and was missing from the log; on
        descriptor 2 it reached the terminal unfiltered (escape sequences acting
        on it, which the echo writes out as `\\x1b...`), was missing from the log,
        and a batch's workers spliced their partial lines into each other on
        the terminal. Both now go through one pipe into the log, and to the
        echo as the plugin's other output does. An echo writing to descriptor 1
        or 2 keeps writing where it did (a copy of the descriptor as it was).
        Only on the main thread: the descriptors are the process's, and plugins
        run side by side in threads (a Dask worker) would take each other's
        output.

        Descriptor 2 is left alone when the echo is an object whose descriptor
        cannot be told (a Python caller's adapter that hands each line to
        `logging`): such an echo commonly ends on descriptor 2 itself, and
        what it wrote there came back through the pipe to be echoed again, a
        line growing `LOG LOG LOG ...` for as long as the run lasted.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved: dict[int, int] = {}
        for fd in (1, 2) if _descriptor_known(self.echo) else (1,):
            with contextlib.suppress(OSError):  # no stdout (stderr) at all: nothing to keep
                saved[fd] = os.dup(fd)
        if 1 not in saved:
            for copy in saved.values():
                os.close(copy)
            yield
            return
        _flush(sys.__stdout__)
        _flush(sys.__stderr__)
        # an echo to descriptor 1 or 2 (the command line's sys.stderr) keeps writing
        # where it did: through the pipe, a write under the lock would wait on the
        # reader, which waits on the lock, and what it wrote would come round again
        moved = next(
            (m for fd, copy in saved.items() if (m := _on_descriptor(self.echo, fd, copy))),
            None,
        )
        echo = self.echo
        if moved is not None:
            with self._lock:
                self.echo = moved
        pipe = OutputPipe(lambda chunk: self.write_lines(DESCRIPTORS, chunk))
        # the fault handler (PYTHONFAULTHANDLER, -X faulthandler) writes a crash's
        # traceback to descriptor 2 as the process dies, when the pipe's reader dies
        # too: it was lost, the one account of a segfault in the plugin's C code
        refault = 2 in saved and _fault_handler_on_descriptor_2()
        if refault:
            faulthandler.enable(file=saved[2], all_threads=True)
        for fd in saved:
            os.dup2(pipe.write_fd, fd)
        pipe.close_write_end()
        pipe.start()
        try:
            yield
        finally:
            _flush(sys.__stdout__)
            _flush(sys.__stderr__)
            marked = False
            if pipe.is_behind(1):
                with contextlib.suppress(OSError):  # after all the ended processes wrote
                    marked = os.write(1, pipe.marker) == len(pipe.marker)
            for fd, copy in saved.items():
                os.dup2(copy, fd)  # closes this process's write ends of the pipe
            if refault:
                faulthandler.enable(file=2, all_threads=True)
            for copy in saved.values():
                os.close(copy)
            if moved is not None:
                with self._lock:
                    if self.echo is moved:  # None when the terminal went away
                        self.echo = echo
                with contextlib.suppress(OSError):
                    moved.close()
            # a process the plugin left running may hold the pipe open, and the run
            # does not wait for it
            pipe.finish(marked=marked)
            self.end_lines(DESCRIPTORS)


def _log_bytes(data: str | bytes) -> bytes:
    """What a plugin printed, as the log's bytes.

    A file name from the disk is a str with surrogate escapes: under the C locale
    with PYTHONUTF8=0 every non-ASCII name is (`ses-ü` is `ses-\\udcc3\\udcbc`),
    and "replace" logged `ses-????`. The escapes are written as the bytes they
    stand for, as Python's own stdout writes them in that locale and as a
    container's output reaches the log; any other lone surrogate is replaced.
    """
    if isinstance(data, bytes):
        return data
    try:
        return data.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return data.encode("utf-8", "replace")


def _on_descriptor(stream: TextIO | None, fd: int, saved: int) -> TextIO | None:
    """A stream writing to a copy of `saved` (descriptor `fd` as it was) if `stream`
    writes to descriptor `fd`; else None."""
    if stream is None:
        return None
    try:
        if stream.fileno() != fd:
            return None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    _flush(stream)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return open(os.dup(saved), "w", encoding=encoding, errors="replace")


def _fault_handler_on_descriptor_2() -> bool:
    """Whether the fault handler is on, in the command (`mdivicom`, its batch
    workers), which turns it on only through the interpreter (PYTHONFAULTHANDLER,
    `-X faulthandler`), on descriptor 2: only there is it known where to put it
    back. A Python caller's (pytest's, one writing to a file) is left alone."""
    return on_command_line() and faulthandler.is_enabled()


def _descriptor_known(stream: TextIO | None) -> bool:
    """Whether `stream` is absent, held in memory (`io.StringIO`, which reaches no
    descriptor), or writes to a descriptor it names (so it can be told whether it
    writes where the plugin's output is taken from)."""
    if stream is None or isinstance(stream, io.StringIO):
        return True
    try:
        return isinstance(stream.fileno(), int)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


def _flush(stream: TextIO | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


class _LogStream:
    """A text stream that writes into a RunLog."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, log: RunLog) -> None:
        self._log = log
        #: what `sys.stdout.buffer.write(b"...")` writes to, as on a real stream: a
        #: tool that writes bytes (binary output, text it encoded itself) raised
        #: AttributeError in-process, and ran with --isolate
        self.buffer = _LogBuffer(log)

    def write(self, text: str) -> int:
        # print() writes a line in pieces; the pipe of descriptor 1 must not land between
        self._log.write_lines(PYTHON_STREAMS, text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return sys.__stderr__.fileno() if sys.__stderr__ else 2


class _LogBuffer:
    """The binary stream under a `_LogStream`: bytes go into the log as written."""

    def __init__(self, log: RunLog) -> None:
        self._log = log

    def write(self, data: bytes | bytearray | memoryview) -> int:
        raw = bytes(data)
        self._log.write_lines(PYTHON_STREAMS, raw)
        return len(raw)

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False
