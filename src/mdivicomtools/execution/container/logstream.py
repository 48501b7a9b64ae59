"""A container's output as the engines send it, and as whole lines for the run log.

Docker and Podman send the log of a container without a TTY (mdivicom never
asks for one) as frames, each tagged stdout or stderr. The engines cut a
stream into frames wherever their reads happened to stop, not at line ends:
Podman's conmon reads 8 KiB at a time, so a frame can end mid-line and the
next frame can be the other stream's. Joining the payloads in arrival order
then glues a stderr line into the middle of a stdout line (`line-196` +
`last-line` + `03`), so the run log keeps each stream's partial line back
until its end arrives and writes whole lines only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from mdivicomtools.execution.lines import MAX_PARTIAL, LineJoiner

__all__ = ["MAX_PARTIAL", "STDERR", "STDOUT", "LineJoiner", "joined", "read_frames"]

STDOUT = 1
STDERR = 2

_HEADER = struct.Struct(">BxxxL")

Frame = tuple[int, bytes]


def read_frames(raw: BinaryIO) -> Iterator[Frame]:
    """The frames of the engines' multiplexed log stream, until it ends.

    The format (one byte stream type, three zero bytes, a big-endian length, the
    payload) is the same for Docker's and Podman's `/containers/{id}/logs`.
    """
    while True:
        header = _read_exactly(raw, _HEADER.size)
        if len(header) < _HEADER.size:
            return
        stream, length = _HEADER.unpack(header)
        if not length:
            continue
        payload = _read_exactly(raw, length)
        if payload:
            yield stream, payload
        if len(payload) < length:
            return


def _read_exactly(raw: BinaryIO, size: int) -> bytes:
    # a socket read may return less than asked even when more is coming
    parts: list[bytes] = []
    while size:
        part = raw.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def joined(frames: Iterable[Frame]) -> Iterator[bytes]:
    """A complete log (the stored one) as the run log writes it, piece by piece.

    A generator, not one bytes object: the stored log of a tool that printed a
    gigabyte was held whole (and copied again to be compared), and the runner
    took three times the tool's output in memory.
    """
    joiner = LineJoiner()
    for stream, data in frames:
        chunk = joiner.feed(stream, data)
        if chunk:
            yield chunk
    rest = joiner.flush()
    if rest:
        yield rest
