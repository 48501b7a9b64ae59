"""Whole lines from streams written at the same time.

Two writers into one log (a container's stdout and stderr, an in-process
plugin's print() and the programs it starts) deliver chunks that end
wherever a read or a write happened to stop, not at line ends. Written in
arrival order, one stream's chunk lands inside the other's line; the log
keeps each stream's partial line back until its end arrives instead.
"""

from __future__ import annotations

from collections.abc import Iterable

#: a partial line longer than this is written anyway (a progress bar, binary output)
MAX_PARTIAL = 64 * 1024


class LineJoiner:
    """Turns chunks of several streams into whole lines, each stream's partial line
    held back until it ends."""

    def __init__(self) -> None:
        self._pending: dict[int, bytes] = {}

    def feed(self, stream: int, data: bytes) -> bytes:
        """The bytes that can be written now: every line of `stream` that has ended."""
        data = self._pending.pop(stream, b"") + data
        # a carriage return ends a line too: progress bars redraw with it and would
        # otherwise show nothing until their last update
        end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if len(data) - end > MAX_PARTIAL:
            end = len(data)
        if end < len(data):
            self._pending[stream] = data[end:]
        return data[:end]

    def flush(self, streams: Iterable[int] | None = None) -> bytes:
        """What is left once the writers of `streams` (all if None) are done: their
        unfinished lines, one per stream."""
        chosen = sorted(self._pending if streams is None else set(streams) & set(self._pending))
        return b"\n".join(self._pending.pop(stream) for stream in chosen)
