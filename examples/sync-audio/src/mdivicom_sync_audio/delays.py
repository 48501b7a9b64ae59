"""The samples a lossy codec puts before a recording's first one, and whether a file
accounts for them (see io.py's docstring: where nothing does, they are dropped)."""

from __future__ import annotations

from typing import Any

# the encoder's priming and the decoder's own delay, by the format the decoder reads:
# FFmpeg's encoders (AAC, LAME's MP3), the formats' filter banks (layer II, AC-3)
START_DELAYS = {"aac": 1024, "mp3": 1105, "mp2": 481, "ac3": 256, "eac3": 256}
# a muxer that moved the audio ahead of the video by the delay, or negative
# timestamps that long: within this much (Matroska keeps milliseconds)
TOLERANCE_S = 0.001


def start_delay(codec: Any, first_bytes: bytes) -> int:
    """Samples the track's codec puts before the recording's first one (0: none known).

    `first_bytes`: the start of the track's first packet.
    """
    return START_DELAYS.get(format_of(codec, first_bytes), 0)


def format_of(codec: Any, first_bytes: bytes) -> str:
    """The format of a track, as START_DELAYS names it.

    The decoder's name is not enough for MPEG audio: an MPEG-TS file says only
    "MPEG audio", and FFmpeg's mp3 decoder then reads layer II as well, whose
    delay is another; a frame's header names its layer (bits 18-17: 01 is
    layer III, 10 layer II).
    """
    name = str(getattr(codec, "canonical_name", None) or codec.name)
    name = name.removesuffix("float").removesuffix("_fixed")
    if name in ("mp2", "mp3") and len(first_bytes) >= 2 and first_bytes[0] == 0xFF:
        layer = (first_bytes[1] >> 1) & 0b11
        return {0b01: "mp3", 0b10: "mp2"}.get(layer, name)
    return name


def unaccounted(
    packet_pts: int | None,
    frame_pts: int | None,
    time_base: Any,
    video_starts: list[float],
    delay_s: float,
) -> bool:
    """Whether nothing in the file accounts for the codec's start delay (io.py)."""
    if packet_pts is None:
        return False  # no timestamps to place the sound by at all
    if packet_pts < 0:
        return False  # an edit list: FFmpeg starts the track before zero and drops them
    if frame_pts is not None and frame_pts > packet_pts:
        return False  # the decoder dropped them (a LAME tag, a skip the container gave)
    first_s = float(packet_pts * time_base) if time_base is not None else None
    if video_starts and first_s is not None:
        ahead = min(video_starts) - first_s
        if abs(ahead - delay_s) <= TOLERANCE_S:
            return False  # the muxer started the audio that much before the video
    return True


def late_after_video(
    packet_pts: int | None, time_base: Any, video_starts: list[float]
) -> float | None:
    """How much later (s) than the file's first video frame the audio's first packet
    is, where it is later by more than TOLERANCE_S (None: not later, or no video).

    A delay found unaccounted for is dropped as a camera leaves it, its first
    packet at the recording's first sample. Where the audio starts with its video
    that is what the file shows (and where it starts before, a video track's
    B-frames can start it later); where the audio starts later, the file could as
    well be FFmpeg's, whose first packet is the delay before the recording's first
    sample (as its muxers' audio ahead of the video is), and nothing tells the two
    apart.
    """
    if packet_pts is None or time_base is None or not video_starts:
        return None
    late = float(packet_pts * time_base) - min(video_starts)
    return late if late > TOLERANCE_S else None
