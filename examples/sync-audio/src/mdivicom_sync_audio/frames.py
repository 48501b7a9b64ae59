"""Short frames of a stream's blocks: spectra and onset weights, each made once.

The direct-path stage (fine.py) cuts both recordings into 4-s blocks of short
frames and weighs, per frame and band, how far the power rises above the
room's decaying tail. Its drift search takes the same blocks again along every
drift it weighs, and the other stream's stretch of a block does not move with
the drift at all: on a 60-s pair with a conformed camera 536 block analyses
were made, 247 of them different. The FFTs and the tail recursion were most of
the stage's time, so each stream's analyses are kept and looked up by where the
stretch starts. At most KEPT_STRETCHES are kept, the oldest dropped first, so
that hours of audio never pile up: the retakes that repeat are those of one
span's blocks, close together in time. (A count, not bytes: a stretch at 16 kHz
is twice the bytes of one at 8 kHz, and a byte budget set for 8 kHz held only
six of them, fewer than a 30-s span's eight blocks, so every retake missed.)

What is kept is what every pairing needs, not the spectra themselves: the
frames' phase (unit spectra, whose product with the other's conjugate is the
phase-whitened cross-spectrum), their onset weights, and their log power.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from mdivicom_sync_audio.io import Audio

BLOCK_S = 4.0
FRAME_S = 0.128
LEAD_S = 1.0  # history before a block, so its first frames know the tail before them
TAIL_DB_PER_S = 60 / 0.8  # decay of a 0.8 s RT60 room: slower tails are still caught
ONSET_MARGIN = 4.0
KEPT_STRETCHES = 12  # per stream: a 30-s span's blocks and then some (4 MB each at 8 kHz)
# of a file's own Nyquist frequency, the part its sound may fill: FFmpeg's resampler
# passes up to 0.97 of it and rolls off above
OWN_BAND = 0.9


@dataclass(frozen=True)
class Stretch:
    """A block's frames (after the lead): (frames, bins) arrays."""

    phase: np.ndarray  # X / |X| (0 where X is 0)
    onset: np.ndarray  # how far each frame and band rises above the tail, 0-1
    log_power: np.ndarray  # log(|X|^2 + 1e-30)


def frame_size(rate: int) -> int:
    """Samples per frame: FRAME_S rounded up to a power of two."""
    return 1 << int(np.ceil(np.log2(FRAME_S * rate)))


def _spectra(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    count = 1 + (len(samples) - frame) // hop
    strides = (samples.strides[0] * hop, samples.strides[0])
    view = np.lib.stride_tricks.as_strided(samples, (count, frame), strides)
    return np.fft.rfft(view * np.hanning(frame), 2 * frame)


def own_bins(audio: Audio, frame: int) -> int | None:
    """How many of a frame's bins a file recorded below the analysis rate can fill.

    Above its own Nyquist frequency an 8-kHz file analysed at 48 kHz holds only
    the resampler's leftovers, 100 dB down. Their onset weights follow that
    numerical noise, and once the pair's sum is whitened each such band had a
    vote; the level step at the band's edge also bent the early-reflection
    views' phase. Offsets came out 0.15-0.25 ms late against bounds of 0.12 ms.
    None: the file fills every band.
    """
    if audio.source_rate <= 0 or audio.source_rate >= audio.rate:
        return None
    return int(OWN_BAND * audio.source_rate * frame / audio.rate)


def onset_weight(power: np.ndarray, hop_s: float) -> np.ndarray:
    """Per frame and band: how far the power rises above the decaying tail of the past."""
    decay = 10 ** (-TAIL_DB_PER_S * hop_s / 10)
    tail = np.empty_like(power)
    tail[0] = power[0]
    for index in range(1, len(power)):
        tail[index] = np.maximum(tail[index - 1] * decay, power[index - 1])
    return np.clip(1 - ONSET_MARGIN * tail / np.maximum(power, 1e-30), 0, 1)


class Analysed:
    """One stream and the stretches of it analysed so far (see the module docstring)."""

    def __init__(self, audio: Audio, keep: int = KEPT_STRETCHES) -> None:
        self.audio = audio
        self.rate = audio.rate
        self.frame = frame_size(audio.rate)
        self.hop = self.frame // 4
        self.block = int(BLOCK_S * audio.rate)
        self.lead = int(LEAD_S * audio.rate)
        self.bins = own_bins(audio, self.frame)
        self.keep = keep
        self._kept: OrderedDict[int, Stretch] = OrderedDict()

    def stretch(self, start: int) -> Stretch:
        """The block of samples [start, start + block), analysed."""
        found = self._kept.get(start)
        if found is not None:
            self._kept.move_to_end(start)
            return found
        made = self._analyse(start)
        self._kept[start] = made
        if len(self._kept) > self.keep:
            self._kept.popitem(last=False)
        return made

    def _analyse(self, start: int) -> Stretch:
        samples = self.audio.segment(start - self.lead, start + self.block)
        spectra = _spectra(samples, self.frame, self.hop)
        power = spectra.real**2 + spectra.imag**2
        onset = onset_weight(power, self.hop / self.rate)
        skip = self.lead // self.hop
        phase, power, onset = spectra[skip:], power[skip:], onset[skip:]
        if self.bins is not None:  # bands the file cannot fill weigh nothing
            onset[:, self.bins :] = 0
        # X / |X| as two real products: a complex division costs several times more
        scale = 1 / np.maximum(np.sqrt(power), 1e-30)
        phase.real *= scale
        phase.imag *= scale
        return Stretch(phase, onset, np.log(power + 1e-30))
