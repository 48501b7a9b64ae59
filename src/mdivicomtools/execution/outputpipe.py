"""A pipe that a plugin's processes write into and a thread of the runner logs.

When the plugin is done, the runner must know that everything its finished
processes wrote has been read and logged, and must not wait for processes
the plugin left running (a daemon holding the pipe open). Waiting for the
end of the pipe with a timer got both wrong on a busy machine: a reader
thread that was not scheduled for a second lost the tail of the output, or
split a line in two, and the run said a left-behind process held the pipe
when none did.

Two facts decide instead. The last writer writes a marker, a random token,
as its final write: once the reader has passed it, all that was written
before it is logged, however slow the reader was. And the kernel reports
POLLHUP on the pipe once no writer is left: only then is the end of the
pipe worth waiting for.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable

#: how long the end of the pipe is waited for once every writer is gone, or the
#: marker once it was written; only a reader that cannot write (a blocked
#: terminal) waits this long
READER_WAIT_S = 60.0
#: how long the last writers may take to go once the marker was read
WRITERS_WAIT_S = 1.0


class OutputPipe:
    """A pipe, and a daemon thread passing what arrives in it to `sink`."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self.read_fd, self.write_fd = os.pipe()
        #: the last writer's final write (under PIPE_BUF, so no other write splits it)
        self.marker = b"\0mdivicom-output-end-" + os.urandom(8).hex().encode() + b"\0"
        self._marked = threading.Event()
        self._carry = b""
        # polled for POLLHUP; a copy of its own, since the reader closes read_fd
        # when it reaches the end and the number could then be reused
        self._probe = os.dup(self.read_fd)
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close_write_end(self) -> None:
        """Close the runner's own write end (the writers have theirs)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def is_behind(self, fd: int) -> bool:
        """Whether `fd` writes into this pipe (a plugin may have put another file
        on descriptor 1, which must not receive the marker)."""
        try:
            return os.fstat(fd).st_ino == os.fstat(self._probe).st_ino
        except OSError:
            return False

    def finish(self, *, marked: bool) -> bool:
        """Wait until what the writers that ended wrote has reached the sink.

        `marked`: the marker was written as the last write of the process that
        is done (the runner's, or the isolated child's). Returns False when a
        process still holds the pipe open; the thread goes on logging what it
        writes, and the caller does not wait for it.
        """
        try:
            if marked:
                self._marked.wait(READER_WAIT_S)
            if not _writers_gone(self._probe, WRITERS_WAIT_S):
                return False
        finally:
            os.close(self._probe)
        self._thread.join(READER_WAIT_S)
        return True

    def _pump(self) -> None:
        with contextlib.suppress(OSError), open(self.read_fd, "rb", buffering=0) as pipe:
            for chunk in iter(lambda: pipe.read(65536), b""):
                self._take(chunk)
            self._sink(self._carry)  # a part of the marker's start, then the end
        self._marked.set()

    def _take(self, chunk: bytes) -> None:
        if self._marked.is_set():
            self._sink(chunk)
            return
        data = self._carry + chunk
        at = data.find(self.marker)
        if at >= 0:
            self._carry = b""
            self._sink(data[:at])
            self._marked.set()
            self._sink(data[at + len(self.marker) :])
            return
        # the end of the chunk may be the start of the marker: keep it for the next
        keep = next(
            (
                n
                for n in range(min(len(self.marker) - 1, len(data)), 0, -1)
                if data.endswith(self.marker[:n])
            ),
            0,
        )
        self._carry = data[len(data) - keep :] if keep else b""
        self._sink(data[: len(data) - keep])


def _writers_gone(read_fd: int, timeout: float) -> bool:
    """Whether every write end of the pipe is closed, waiting up to `timeout` for it.

    POLLHUP is reported whatever events are asked for, and only POLLHUP is
    asked for here, so unread data does not end the wait.
    """
    poller = select.poll()
    poller.register(read_fd, 0)
    return any(event & select.POLLHUP for _, event in poller.poll(timeout * 1000))
