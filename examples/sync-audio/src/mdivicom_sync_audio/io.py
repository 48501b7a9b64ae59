"""Reading the audio track of any camera or recorder file through PyAV (FFmpeg).

Files can be hours long, so nothing holds the file's own samples: PyAV decodes
in blocks, FFmpeg's resampler mixes every block down to mono at the analysis
rate as it goes, and only that (float16, half the bytes of float32; its 11-bit
mantissa is far below the noise of any room recording) is kept. A 2-hour track
at 8 kHz is then 115 MB whatever the file's own rate and channel count.

Time: a stream's time is the container's presentation time in seconds,
counted from the container's start, so a video frame's time from the same
container maps with the same offset. One trap is handled on purpose: lossy
codecs put samples before the recording's first one, the encoder's priming
and the decoder's own delay: 1024 for AAC (21.3 ms at 48 kHz), 1105 for MP3
(LAME's 576 and the decoder's 529), 481 for MPEG layer II (its filter bank),
256 for AC-3 and E-AC-3 (one block). A file can account for them: an MP4/MOV
edit list (FFmpeg then starts the track before zero), an MP3's LAME tag or
Opus's pre-skip (the decoder drops them), timestamps before zero (Matroska:
FFmpeg 8 drops what they cover, older versions decode it before zero, where
it is dropped here: the codec's delay exactly when it is that long to the
millisecond Matroska keeps), or a muxer that starts the audio that much
before the video, so that the sound itself starts with the first frame
(FFmpeg's MPEG-TS and Matroska muxers do). Where none does (AVI, raw
AAC or MP3 files, MP4 without an edit list, a camera's MPEG-TS whose audio
starts with its video), FFmpeg decodes them as the first sound, and the
audio would sit that much late against the file's own video and against a
WAV of the same recording. Then they are dropped and the next sample is
the stream's first, at the first packet's time (`priming_samples_dropped`
in the report). Audio that starts later than its video leaves the two ways
apart (FFmpeg's first packet is the delay before the sound, a camera's the
sound's start), so dropping it there is a guess `notes` says.

Another is a gap in the audio: a camera or capture program that drops audio
packets (a busy card, a lost USB buffer) leaves its timestamps jumping over
them. Decoded samples laid end to end would then put everything after the
gap early by the gap's length, while the video frames keep the container's
time: an offset measured after a 0.26 s dropout was 256 ms off, with a tight
bound. So each decoded frame goes where its timestamp puts it: a jump ahead
is filled with silence, an overlap is dropped. A jump must be a whole jump,
at least half the frame's own length, so that timestamps rounded by their
container (to the millisecond, in WebM) or slowly drifting from the sample
count never nudge the audio; such slow drift is the drift the sync measures.
A jump beyond what a dropout can be (a file joined from two recordings, a
clock reset) cannot be placed and is an error naming the file and the time.
A join whose clock goes on is read on, also when the rate or the channel
layout changes there.

A damaged packet (a bad sector of a camera's card, a write cut short) makes
FFmpeg's decoder refuse it; a 2-hour camera file must not be lost to one such
spot, so the packet is passed over, the next frame's timestamp leaves its
time as a gap (silence), and its time is listed (`undecodable`). When more
than half of a track's packets are refused, it is not damage but a track
that cannot be read, and that is an error naming the file. A WAV is read as
far as its header says, so one whose size field wrapped past 4 GiB or was
never updated is read again to its end (`notes` says so). Channels that cancel
out when mixed down (one another inverted: a polarity-reversed cable, a
recorder's inverted safety channel) are no silent recording: its first channel
is read alone (`notes` says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from mdivicom_sync_audio import delays

GAP_FRACTION = 0.5  # of a frame's length: a smaller timestamp jump is rounding, not a gap
MAX_GAP_S = 600.0  # a longer jump ahead is not a dropout (and would hold that much silence)
MAX_DAMAGED_FRACTION = 0.5  # of a track's packets: more refused is no damage but a misread
MAX_OVERLAP_S = 1.0  # a longer jump back is a reset or a join, not overlapping packets
SILENCE_RMS = 1e-5  # of full scale: a track quieter than this has nothing to sync on
CUT_SHORT_S = 1.0  # audio this much short of where the header says it ends: a cut file
FIRST_FRAMES = 16  # a video track's first packets, to time one FFmpeg's probe did not
FIRST_FRAMES_READ = 50_000  # packets of every track read for them (minutes of audio)
ATTACHED_PICTURE = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, no video in time
# a stream folder's media files, by suffix (case aside): what cameras, recorders and
# phones write, all read by FFmpeg; a file with another suffix is left alone (layout.py)
AUDIO_SUFFIXES = (
    ".wav", ".rf64", ".w64", ".flac", ".mp3", ".mp2", ".m4a", ".aac", ".ac3", ".ogg", ".oga",
    ".opus", ".aif", ".aiff", ".aifc", ".caf", ".mka", ".wma", ".amr",
)  # fmt: skip
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".vob",
    ".mod", ".tod", ".dv", ".mkv", ".avi", ".webm", ".wmv", ".asf", ".flv", ".mxf",
)  # fmt: skip
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES


class MediaError(ValueError):
    """A file that cannot be read as audio; the message names the file.

    `other_tracks` lists the file's other audio tracks (0 = the first), when the
    one read failed and another might not: the caller, which knows the stream the
    file belongs to, says how to choose one.
    """

    def __init__(self, message: str, other_tracks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.other_tracks = other_tracks


@dataclass
class Audio:
    """One stream's audio at the analysis rate, plus what the container says about it."""

    path: Path
    rate: int  # the analysis rate of `samples`
    samples: np.ndarray  # mono float16
    source_rate: int
    channels: int
    codec: str
    container: str
    start_s: float  # time of samples[0] on the container's clock (from its start)
    priming_dropped: int = 0
    track: int = 0  # which of the file's audio tracks was read (0 = the first)
    tracks: int = 1  # how many audio tracks the file has
    video: list[dict[str, Any]] = field(default_factory=list)
    # (container time s, length s) of each jump in the audio's timestamps: silence
    # filled in, or (negative) overlapping audio dropped
    gaps: list[tuple[float, float]] = field(default_factory=list)
    # times (s) of the packets that could not be decoded (damaged): silence is in
    # their place, listed in `gaps` too where the next timestamp left one
    undecodable: list[float] = field(default_factory=list)
    # what a user should know about the file (damage, a short header), in words naming
    # it: the run warns of each
    notes: list[str] = field(default_factory=list)
    # where the recording ends by the file's header, when the file was cut short
    # before it (a copy that did not finish); None: where the audio read ends
    recorded_end_s: float | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate

    @property
    def end_s(self) -> float:
        """Where the recording ends (container time): a camera's next chapter starts
        there, also when the copy of this one stops short of it."""
        read_end = self.start_s + self.duration_s
        return read_end if self.recorded_end_s is None else self.recorded_end_s

    def segment(self, start: int, stop: int) -> np.ndarray:
        """float64 samples[start:stop], zero outside the recording."""
        out = np.zeros(max(0, stop - start))
        lo, hi = max(0, start), min(len(self.samples), stop)
        if hi > lo:
            out[lo - start : hi - start] = self.samples[lo:hi]
        return out


class _Samples:
    """A growing float16 array: decoded frames are small (~170 samples at 8 kHz),
    and a list of millions of tiny arrays costs more in overhead than in data."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, 1), dtype=np.float16)
        self.size = 0

    def add(self, piece: np.ndarray) -> None:
        end = self.size + len(piece)
        if end > len(self.data):
            grown = np.empty(max(end, len(self.data) + len(self.data) // 4), dtype=np.float16)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = piece
        self.size = end

    def samples(self) -> np.ndarray:
        return self.data[: self.size]


def _seconds(value: int | None, time_base: Any) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


class _Timeline:
    """Puts each decoded frame where its timestamp says (see the module docstring):
    the frames to hand on for one decoded frame, and the jumps met so far."""

    def __init__(self, path: Path, origin: float) -> None:
        self.path = path
        self.origin = origin
        self.end: float | None = None  # where the audio placed so far ends
        self.gaps: list[tuple[float, float]] = []
        self.behind = False  # the last frame was dropped whole, as overlap

    def place(self, frame: Any) -> list[Any]:
        at = frame.time  # pts in seconds, None without one
        length = frame.samples / frame.sample_rate
        if at is None or self.end is None:
            self.end = (self.end or 0.0) + length if at is None else at + length
            return [frame]
        jump = at - self.end
        # rounding, except that an overlap being dropped ends exactly where it ends
        if abs(jump) < GAP_FRACTION * length and not (self.behind and jump < 0):
            self.end, self.behind = at + length, False
            return [frame]
        here = round(self.end - self.origin, 6)
        if jump > MAX_GAP_S or (jump < -MAX_OVERLAP_S and not self.behind):
            raise MediaError(
                f"{self.path}: its audio timestamps jump {jump:+.3f} s at {here:.3f} s, more "
                f"than a dropout ({MAX_GAP_S:g} s ahead) or an overlap ({MAX_OVERLAP_S:g} s "
                "back) can be; a file joined from two recordings or with a clock reset "
                "cannot be placed in time: split it there"
            )
        if jump > 0:
            self.gaps.append((here, round(jump, 6)))
            self.end, self.behind = at + length, False
            return [*_silence(frame, round(jump * frame.sample_rate)), frame]
        drop = min(frame.samples, round(-jump * frame.sample_rate))
        if self.behind:  # the same overlap, going on
            here, dropped_s = self.gaps.pop()
        else:
            dropped_s = 0.0
        self.gaps.append((here, round(dropped_s - drop / frame.sample_rate, 6)))
        self.behind = True
        if drop == frame.samples:
            return []
        self.end, self.behind = at + length, False
        return [_without_start(frame, drop)]


class _Mixdown:
    """FFmpeg's resampler to mono float at `rate`, made again when the track's own
    rate, channel layout or sample format changes on the way (an MPEG-TS file
    joined from two recordings, a broadcast switching to 5.1): one resampler
    takes one setup only."""

    def __init__(self, rate: int, channel: int | None = None) -> None:
        self.rate = rate
        self.channel = channel  # None: every channel mixed; else this one alone
        self.setup: tuple[str, str, int] | None = None
        self.resampler: Any = None

    def __call__(self, frame: Any) -> list[np.ndarray]:
        import av

        if self.channel is not None:
            frame = _one_channel(frame, self.channel)
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        out = []
        if setup != self.setup:
            out = self.flush()
            self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self.setup = setup
        return out + [block.to_ndarray().reshape(-1) for block in self.resampler.resample(frame)]

    def flush(self) -> list[np.ndarray]:
        if self.resampler is None:
            return []
        return [block.to_ndarray().reshape(-1) for block in self.resampler.resample(None)]


def _one_channel(frame: Any, index: int) -> Any:
    """`frame`'s channel `index` alone, as a mono frame of its format and rate."""
    import av

    array = frame.to_ndarray()
    if frame.format.is_planar:
        rows = array[index : index + 1]
    else:
        rows = array[:, index :: _interleaved(frame)]
    made = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(rows), format=frame.format.name, layout="mono"
    )
    made.sample_rate = frame.sample_rate
    return made


def _silence_not_finite(samples: np.ndarray) -> tuple[int, int]:
    """Set the NaN and infinite values of `samples` to 0, a piece at a time (a
    2-hour track is 57 M samples); how many there were, and the index of the first
    (0 when none)."""
    count, first = 0, 0
    step = 1 << 20
    for start in range(0, len(samples), step):
        piece = samples[start : start + step]
        bad = ~np.isfinite(piece)
        if bad.any():
            first = first if count else start + int(np.argmax(bad))
            count += int(bad.sum())
            piece[bad] = 0
    return count, first


def is_silent(samples: np.ndarray) -> bool:
    """Whether `samples` hold no sound to sync on: their spread (the mean, a DC
    offset, taken out) is under SILENCE_RMS of full scale."""
    return level(samples) < SILENCE_RMS


def level(samples: np.ndarray) -> float:
    """The spread of `samples` around their mean (a DC offset taken out), as a
    fraction of full scale: 0 for no samples."""
    square_sum = 0.0
    step = 1 << 20  # float64 a piece at a time: a 2-hour track is 57 M samples
    for start in range(0, len(samples), step):
        piece = samples[start : start + step].astype(np.float64)
        square_sum += float(np.sum((piece - piece.mean()) ** 2))
    return float(np.sqrt(square_sum / len(samples))) if len(samples) else 0.0


def _interleaved(frame: Any) -> int:
    """Values per sample in a row of `frame.to_ndarray()`: its channels when they
    are interleaved in one row (packed formats), 1 when each has its own (planar)."""
    return 1 if frame.format.is_planar else len(frame.layout.channels)


def _planes(frame: Any, array: np.ndarray) -> Any:
    """A frame like `frame` (format, layout, rate) holding `array` (as to_ndarray gives)."""
    import av

    made = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(array), format=frame.format.name, layout=frame.layout.name
    )
    made.sample_rate = frame.sample_rate
    return made


def _silence(like: Any, count: int) -> list[Any]:
    """`count` silent samples in frames of `like`'s format, a second at most each,
    so that a long gap never needs more than a second of source samples at once."""
    rows = len(like.layout.channels) if like.format.is_planar else 1
    dtype = like.to_ndarray().dtype
    frames = []
    for start in range(0, count, like.sample_rate):
        size = min(like.sample_rate, count - start)
        frames.append(_planes(like, np.zeros((rows, size * _interleaved(like)), dtype=dtype)))
    return frames


def _without_start(frame: Any, count: int) -> Any:
    """`frame` without its first `count` samples."""
    return _planes(frame, frame.to_ndarray()[:, count * _interleaved(frame) :])


def _unreadable(message: str, streams: list[Any], read: Any) -> MediaError:
    """The error for a track that cannot be read, naming how many the file has when
    another might be (a track in a codec FFmpeg has no decoder for beside one it
    reads, a camera's second microphone)."""
    others = tuple(index for index, stream in enumerate(streams) if stream is not read)
    if others:
        message += f"; it has {len(streams)} audio tracks"
    return MediaError(message, others)


def read_audio(path: Path, rate: int, track: int | None = None) -> Audio:
    """Decode the chosen audio track of `path` to mono float16 at `rate` Hz.

    `track` indexes the file's audio streams (0 = first); None takes the one
    FFmpeg ranks best (the default track of a camera file).
    """
    options: dict[str, str] = {}
    audio = _read(path, rate, track, options)
    declared_s = audio.duration_s
    if _wav_header_short(path, audio):
        # FFmpeg reads a WAV as far as its header says; a size field that wrapped
        # past 4 GiB (a long recording written without RF64) or that a recorder
        # never updated would silently leave the rest of the recording unread
        options = {"ignore_length": "1"}
        audio = _read(path, rate, track, options)
        audio.notes.append(
            f"{path.name}: its WAV header gives {declared_s:.1f} s of audio but the file holds "
            f"{audio.duration_s:.1f} s (a recording over 4 GiB written without RF64, or "
            "a header never updated): read to the end of the file"
        )
    if audio.channels > 1 and is_silent(audio.samples):
        # channels that cancel when mixed (one the other inverted: a polarity-reversed
        # cable, a recorder's inverted safety channel) are no silent recording
        alone = _read(path, rate, track, options, channel=0)
        if not is_silent(alone.samples):
            alone.notes = [
                *audio.notes,
                f"{path.name}: its {audio.channels} channels cancel out when mixed down (one "
                "is another inverted: a polarity-reversed cable or an inverted safety "
                "channel?), so its first channel alone was read",
            ]
            audio = alone
    return audio


def _wav_header_short(path: Path, audio: Audio) -> bool:
    """Whether a PCM WAV file holds more than twice the audio its header declares
    (and over a MiB more): no trailing chunk of metadata is that large."""
    if audio.container != "wav" or not audio.codec.startswith("pcm_"):
        return False
    bits = int("".join(c for c in audio.codec if c.isdigit()) or 8)
    declared = audio.duration_s * audio.source_rate * audio.channels * bits // 8
    extra = path.stat().st_size - declared
    return extra > max(2**20, declared)


def _unopenable(path: Path, error: Exception) -> MediaError:
    """The error for a file FFmpeg cannot open, saying what likely happened where the
    file shows it: FFmpeg's own words ("Invalid data found when processing input")
    fit an empty file and a camera file cut short alike, and tell neither what to do."""
    try:
        size = path.stat().st_size
        without_index = size > 0 and _mp4_without_index(path)
    except OSError:  # not readable by us either (permissions, an I/O error)
        size, without_index = -1, False
    if size == 0:
        return MediaError(
            f"{path}: the file is empty (0 bytes): a recording never written (the camera "
            "stopped at once) or a copy that failed; copy it again, or remove it"
        )
    if without_index:
        return MediaError(
            f"{path}: an MP4/MOV file without its index (no 'moov' box): the recording was "
            "cut short (power lost, the card pulled) before the camera could finish it; a "
            "repair tool such as untrunc rebuilds it from a good file of the same camera, "
            "or remove it"
        )
    reason = getattr(error, "strerror", None) or str(error)
    return MediaError(f"{path}: cannot open as audio or video ({reason})")


MP4_TOP_BOXES = (b"ftyp", b"mdat", b"moov", b"free", b"skip", b"wide", b"uuid", b"pnot")


def _mp4_without_index(path: Path) -> bool:
    """Whether `path` is an MP4/MOV (top-level boxes from its start) with no `moov`
    box, the index a camera writes last: a file whose recording was cut short."""
    seen: list[bytes] = []
    size = path.stat().st_size
    with path.open("rb") as handle:
        at = 0
        while at + 8 <= size and len(seen) < 1000:
            handle.seek(at)
            header = handle.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind not in MP4_TOP_BOXES:
                break
            seen.append(kind)
            if length == 1 and len(header) == 16:  # a 64-bit size follows
                length = int.from_bytes(header[8:16], "big")
            if length < 8:  # 0: the box runs to the end of the file
                break
            at += length
    return bool(seen) and b"moov" not in seen


def _first_frames(path: Path, index: int) -> tuple[float | None, float | None]:
    """The container time of track `index`'s first frame, and its frames per second
    from the step between its first frames' timestamps (None: not found); the file
    is opened again, so the audio is read from its start whatever this reads."""
    import av

    stamps: list[int] = []
    with av.open(str(path)) as again:
        track = again.streams[index]
        # every track's packets, so that a track with none stops the search early
        # instead of reading the whole file
        for read, packet in enumerate(again.demux()):
            if packet.stream.index == index and packet.pts is not None:
                stamps.append(packet.pts)
            if len(stamps) >= FIRST_FRAMES or read >= FIRST_FRAMES_READ:
                break
        base = track.time_base
    if not stamps or base is None:
        return None, None
    stamps.sort()  # decoding order is not showing order (B-frames)
    steps = [later - earlier for earlier, later in pairwise(stamps) if later > earlier]
    step = float(np.median(steps)) * float(base) if steps else 0.0
    return float(stamps[0] * base), (round(1 / step, 3) if step > 0 else None)


def _declared_end_s(path: Path, container: Any, stream: Any, origin: float) -> float | None:
    """Where the audio ends (container time from `origin`) as the file's header or
    index gives it, for the formats that give it exactly (None: not given): a file
    cut short (a copy that did not finish) is read up to where its data stops, and
    only this says that the rest of the recording is missing."""
    fmt = container.format.name
    if fmt == "wav":
        # FFmpeg takes the audio's length from the file's size where that is smaller
        return _wav_data_s(path)
    if fmt == "flac" or fmt.startswith("mov,"):  # STREAMINFO; an MP4/MOV's index
        if stream.duration is None or stream.time_base is None:
            return None
        begins = _seconds(stream.start_time, stream.time_base) or origin
        return begins - origin + float(stream.duration * stream.time_base)
    if fmt.startswith("matroska"):  # the segment's duration, at the file's start
        return None if container.duration is None else container.duration / 1e6
    return None


def _wav_data_s(path: Path) -> float | None:
    """The seconds of audio a RIFF WAV's header declares (its `data` size over its
    byte rate); None where it declares none (a size left 0, 0x7FFFFFFF or
    0xFFFFFFFF by a recorder that streams, an RF64 file) or the header cannot be
    read."""
    byte_rate = 0
    with path.open("rb") as handle:
        if handle.read(12)[:4] != b"RIFF":
            return None
        for _ in range(64):  # chunks before `data`: fmt, LIST, bext, junk, ...
            header = handle.read(8)
            if len(header) < 8:
                return None
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind == b"data":
                if not byte_rate or size == 0 or size >= 0x7FFFFFFF:
                    return None  # a placeholder a recorder that streams leaves
                return size / byte_rate
            if kind == b"fmt ":
                body = handle.read(size + size % 2)
                byte_rate = int.from_bytes(body[8:12], "little") if len(body) >= 12 else 0
            else:  # bext, iXML, LIST, JUNK, ...: any size
                handle.seek(size + size % 2, 1)
    return None


def _frame_rate(video: Any) -> float | None:
    """A video track's frames per second, None where the file does not say: FFmpeg's
    guess falls back to the track's clock (90000 in MPEG-TS) when its probe met no
    frame (video that starts late in the file), and 90000 frames a second would put
    the first frame hundreds of thousands of frames in (`offset_frames`)."""
    if video.average_rate:
        return float(video.average_rate)
    guessed = video.guessed_rate
    if not guessed or (video.time_base is not None and guessed == 1 / video.time_base):
        return None
    return float(guessed)


def _read(
    path: Path, rate: int, track: int | None, options: dict[str, str], channel: int | None = None
) -> Audio:
    import av
    from av.audio.stream import AudioStream

    try:
        container = av.open(str(path), options=options)
    except (av.error.FFmpegError, OSError) as error:
        raise _unopenable(path, error) from error
    with container:
        streams = list(container.streams.audio)
        if not streams:
            raise MediaError(
                f"{path}: has no audio track (a camera that recorded without sound?), so "
                "it cannot be synced by its sound: move it out of the stream folder"
            )
        if track is None:
            # an audio stream whenever there is one (PyAV's stubs say only Stream; and
            # av.AudioStream is not exported by every PyAV this plugin accepts)
            best = container.streams.best("audio")
            stream = best if isinstance(best, AudioStream) else streams[0]
        elif 0 <= track < len(streams):
            stream = streams[track]
        else:
            raise MediaError(
                f"{path}: audio_track {track} asked, but the file has {len(streams)} audio "
                f"track(s), numbered from 0",
                tuple(range(len(streams))),
            )
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        # a track that starts before zero holds what is not to be heard there: the
        # codec's delay (FFmpeg drops it itself for an MP4 edit list, not for every
        # Matroska muxer's negative timestamps), so the file starts at zero at the earliest
        origin = max(origin, 0.0)
        # each video track and its first frame's container time (None: not given)
        tracks: list[tuple[Any, float | None]] = []
        video = []
        for v in container.streams.video:
            if int(getattr(v, "disposition", 0)) & ATTACHED_PICTURE:
                continue  # cover art (an MP3's, an M4A's): one picture, no frames in time
            at, fps = _seconds(v.start_time, v.time_base), _frame_rate(v)
            if at is None or fps is None:
                # FFmpeg's probe met no frame of it (video late in the file, after
                # seconds of audio): its start is a guess then (0 in MPEG-TS, not
                # where the first frame is), and so is its rate; its first packets say
                first, measured = _first_frames(path, v.index)
                at, fps = (at if first is None else first), fps or measured
            tracks.append((v, at))
            start = round((origin if at is None else at) - origin, 6)
            video.append({"index": v.index, "fps": fps, "start_s": start})
        codec = stream.codec_context.name
        fmt = container.format.name
        mixdown = _Mixdown(rate, channel)
        expected = (container.duration or 0) / 1e6 * rate
        buffer = _Samples(int(expected * 1.01) + rate)
        first_packet_pts: int | None = None
        first_time: float | None = None
        first_frame_pts: int | None = None
        first_bytes = b""
        timeline = _Timeline(path, origin)
        damaged: list[float] = []  # container times of the packets the decoder refused
        packets = 0
        refusal: Exception | None = None
        try:
            for packet in container.demux(stream):
                if first_packet_pts is None and packet.pts is not None:
                    first_packet_pts, first_bytes = packet.pts, bytes(packet)[:4]
                packets += packet.size > 0
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as error:
                    # a damaged packet (a bad sector, a broken write): the next frame's
                    # timestamp leaves its time as a gap, filled with silence
                    at = _seconds(packet.pts, stream.time_base)
                    damaged.append(at if at is not None else (timeline.end or origin))
                    refusal = refusal or error
                    continue
                for frame in frames:
                    if first_time is None:
                        first_time, first_frame_pts = frame.time, frame.pts
                    for placed in timeline.place(frame):
                        for block in mixdown(placed):
                            buffer.add(block)
            for block in mixdown.flush():
                buffer.add(block)
        except av.error.FFmpegError as error:
            raise _unreadable(
                f"{path}: audio cannot be decoded ({error})", streams, stream
            ) from error
        if len(damaged) > max(MAX_DAMAGED_FRACTION * packets, 1) and len(damaged) > 10:
            raise _unreadable(
                f"{path}: {len(damaged)} of its {packets} audio packets cannot be decoded "
                f"({refusal}): not a damaged spot or two, but a track this tool cannot read",
                streams,
                stream,
            )
        source_rate = int(stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        declared_end = _declared_end_s(path, container, stream, origin)
        delay = delays.start_delay(stream.codec_context.codec, first_bytes)
        video_starts = [at for _, at in tracks if at is not None]
        dropped = 0
        late_s = None  # how much after its video a track whose delay was dropped starts
        if delay and source_rate:
            delay_s = delay / source_rate
            timing = (first_packet_pts, first_frame_pts, stream.time_base)
            if delays.unaccounted(*timing, video_starts, delay_s):
                dropped = delay
                late_s = delays.late_after_video(first_packet_pts, stream.time_base, video_starts)
    samples = buffer.samples()
    if not len(samples):
        raise _unreadable(f"{path}: the audio track decodes to no samples", streams, stream)
    # a float recording can hold values that are no sound (NaN, infinite): one such
    # value makes every correlation over it NaN, so they are silence instead
    not_finite, first_not_finite = _silence_not_finite(samples)
    # the start delay taken off at the first packet's time: the stream's time starts
    # after it, so the jumps met on the container's clock come that much earlier
    skipped_s = dropped / source_rate if dropped else 0.0
    if dropped:
        samples = samples[round(dropped * rate / source_rate) :]
    first = first_time if first_time is not None else origin
    if first < origin and source_rate:
        # decoded before zero: dropped, as its negative timestamps say; they are the
        # codec's delay, to a millisecond in Matroska, when they are that long
        early = round((origin - first) * source_rate)
        if delay and abs(early - delay) <= delays.TOLERANCE_S * source_rate:
            early = delay
        samples = samples[round(early * rate / source_rate) :]
        dropped += early
        first = origin
    start = first - origin
    gaps = [(round(at - skipped_s, 6), length) for at, length in timeline.gaps]
    undecodable = [round(at - origin - skipped_s, 6) for at in damaged]
    notes = []
    if undecodable:
        notes.append(
            f"{len(undecodable)} damaged audio packet(s) of {path.name} could not be decoded "
            f"(the first at {undecodable[0]:.3f} s): silence is in their place"
        )
    if late_s is not None:
        delay_ms = dropped / source_rate * 1000
        notes.append(
            f"{path.name}: its audio starts {late_s:.3f} s after its video, so the file does "
            f"not say whether the {dropped} samples ({delay_ms:.1f} ms) {codec} puts first "
            "come before that time, as FFmpeg writes them (OBS, screen recorders, "
            "conversions), or from it, as cameras write them: they were taken as a "
            f"camera's; if FFmpeg wrote the file, its sound is placed {delay_ms:.1f} ms early"
        )
    if not_finite:
        notes.append(
            f"{path.name}: its audio holds values that are not numbers (NaN or infinite: a "
            f"fault of the recorder or of a conversion), {not_finite / rate:.3f} s of it in "
            f"all, the first at {first_not_finite / rate - skipped_s:.3f} s: silence is in "
            "their place"
        )
    end = start + len(samples) / rate
    cut_short = declared_end is not None and declared_end - end > CUT_SHORT_S
    if cut_short:
        notes.append(
            f"{path.name}: its audio ends at {end:.1f} s, but the file's header gives "
            f"{declared_end:.1f} s: the file was cut short (a copy or a transfer that did not "
            "finish?), and the rest of the recording is not synced: copy it again if its "
            "source still has it"
        )
    return Audio(
        path=path,
        rate=rate,
        samples=samples,
        source_rate=source_rate,
        channels=channels,
        codec=codec,
        container=fmt,
        start_s=round(start, 6),
        priming_dropped=dropped,
        track=next(index for index, candidate in enumerate(streams) if candidate is stream),
        tracks=len(streams),
        video=video,
        gaps=gaps,
        undecodable=undecodable,
        notes=notes,
        recorded_end_s=declared_end if cut_short else None,
    )


def write_wav(path: Path, rate: int, samples: np.ndarray, bits: int = 16) -> None:
    """Write PCM (mono, or channels in columns), the loudest sample at -1 dBFS."""
    import wave

    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    peak = float(np.max(np.abs(data))) or 1.0
    scale = 0.89 / peak * (2 ** (bits - 1) - 1)
    pcm = np.round(data * scale).astype(np.int32)
    if bits == 16:
        raw = pcm.astype("<i2").tobytes()
    elif bits == 24:
        raw = pcm.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raise ValueError(f"bits must be 16 or 24, not {bits}")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(data.shape[1])
        handle.setsampwidth(bits // 8)
        handle.setframerate(rate)
        handle.writeframes(raw)


def write_mp4(
    path: Path, rate: int, samples: np.ndarray, *, video_fps: int | None = 25, mark_priming: bool
) -> None:
    """An MP4 camera file: AAC audio (and a tiny black video track) with PyAV.

    `mark_priming=False` gives frames no timestamps, which is how a file ends
    up with unmarked encoder priming (see the module docstring).
    """
    import av

    data = np.asarray(samples, dtype=np.float64)
    data = (data / (float(np.max(np.abs(data))) or 1.0) * 0.89).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        video = None
        if video_fps:
            video = out.add_stream("mpeg4", rate=video_fps)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        block = 1024
        for start in range(0, len(data), block):
            frame = av.AudioFrame.from_ndarray(
                data[None, start : start + block], format="flt", layout="mono"
            )
            frame.rate = rate
            if mark_priming:
                frame.pts = start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
        if video is not None and video_fps:  # the one implies the other
            black = np.zeros((48, 64, 3), dtype=np.uint8)
            for index in range(int(len(data) / rate * video_fps)):
                picture = av.VideoFrame.from_ndarray(black, format="rgb24")
                picture.pts = index
                for packet in video.encode(picture):
                    out.mux(packet)
            for packet in video.encode(None):
                out.mux(packet)
