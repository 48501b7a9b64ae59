"""Estimating the time offset (and drift) between audio tracks of one session.

Method: every track is mixed to mono, resampled to a common analysis rate and
whitened in the cross-spectrum (GCC-PHAT): the phase transform keeps only the
timing information, so different gains, microphones and room colouring do not
move the peak, and broadband events (claps, speech onsets) give a sharp one.
The peak is refined to a fraction of a sample by parabolic interpolation. The
confidence is how far the peak stands out from the rest of the correlation.
Drift is the slope of a line fitted to offsets measured in short windows along
the recording; it is reported only when enough windows are confident.

Convention: `offset_s` maps the stream's own time to the reference stream's:
t_reference = t_stream + offset_s.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_DRIFT_SPAN_S = 20.0
WINDOW_S = 4.0
WINDOW_CONFIDENCE = 20.0
WINDOW_GUARD_S = 0.5


@dataclass(frozen=True)
class Track:
    stream_id: str
    path: Path
    rate: int
    samples: np.ndarray  # mono float64 at the file's own rate

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Estimate:
    offset_s: float
    confidence: float
    drift_ppm: float | None = None


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """(rate, mono float samples) of a PCM WAV file of 8, 16, 24 or 32 bits."""
    with wave.open(str(path), "rb") as handle:
        rate = handle.getframerate()
        channels = handle.getnchannels()
        width = handle.getsampwidth()
        raw = handle.readframes(handle.getnframes())
    if width == 1:
        data = np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        data = (bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)).astype(np.int64)
        data = np.where(data >= 1 << 23, data - (1 << 24), data).astype(np.float64)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float64)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    return rate, data.reshape(-1, channels).mean(axis=1)


def write_wav(path: Path, rate: int, samples: np.ndarray) -> None:
    """Write mono 16-bit PCM, scaling so that the loudest sample is at -1 dBFS."""
    peak = float(np.max(np.abs(samples))) or 1.0
    pcm = np.round(samples / peak * 0.89 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling through the spectrum (fine for minutes of audio)."""
    if rate == target:
        return samples
    count = round(len(samples) * target / rate)
    spectrum = np.fft.rfft(samples)
    keep = count // 2 + 1
    if keep <= len(spectrum):
        spectrum = spectrum[:keep]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(keep - len(spectrum), dtype=complex)])
    return np.fft.irfft(spectrum, n=count) * (count / len(samples))


def _prepare(samples: np.ndarray) -> np.ndarray:
    centred = samples - samples.mean()
    rms = float(np.sqrt(np.mean(centred**2))) or 1.0
    return centred / rms


def gcc_phat(reference: np.ndarray, other: np.ndarray, rate: int, max_lag_s: float) -> Estimate:
    """Offset of `other` against `reference` (t_reference = t_other + offset)."""
    ref, oth = _prepare(reference), _prepare(other)
    size = 1 << int(np.ceil(np.log2(len(ref) + len(oth))))
    cross = np.fft.rfft(ref, size) * np.conj(np.fft.rfft(oth, size))
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.fft.irfft(cross, size)
    max_lag = min(int(max_lag_s * rate), size // 2 - 1)
    # lags -max_lag..+max_lag, where corr[l] = sum ref[n + l] * other[n]
    window = np.concatenate([corr[-max_lag:], corr[: max_lag + 1]])
    peak = int(np.argmax(window))
    fraction = 0.0
    if 0 < peak < len(window) - 1:
        left, centre, right = window[peak - 1], window[peak], window[peak + 1]
        denominator = left - 2 * centre + right
        if denominator != 0:
            fraction = 0.5 * (left - right) / denominator
    lag = peak - max_lag + fraction
    guard = max(1, int(0.01 * rate))
    rest = np.concatenate([window[: max(0, peak - guard)], window[peak + guard + 1 :]])
    noise = float(np.std(rest)) if len(rest) else 0.0
    confidence = float(window[peak] / noise) if noise > 0 else float("inf")
    # other[n] == reference[n + lag]  =>  t_reference = t_other + lag / rate
    return Estimate(offset_s=lag / rate, confidence=confidence)


def estimate(reference: Track, other: Track, *, analysis_rate: int, max_lag_s: float) -> Estimate:
    """Offset, confidence and (when the recordings are long enough) drift.

    With drift, `offset_s` is the offset at the stream's time zero, so that
    t_reference = t_stream * (1 + drift_ppm * 1e-6) + offset_s holds throughout.
    """
    ref = resample(reference.samples, reference.rate, analysis_rate)
    oth = resample(other.samples, other.rate, analysis_rate)
    overall = gcc_phat(ref, oth, analysis_rate, max_lag_s)
    line = _drift(ref, oth, analysis_rate, max_lag_s, overall)
    if line is None:
        return Estimate(offset_s=float(overall.offset_s), confidence=float(overall.confidence))
    slope, intercept = line
    return Estimate(
        offset_s=float(intercept),
        confidence=float(overall.confidence),
        drift_ppm=float(slope * 1e6),
    )


def _drift(
    ref: np.ndarray, oth: np.ndarray, rate: int, max_lag_s: float, overall: Estimate
) -> tuple[float, float] | None:
    """(slope, offset at time zero) of a line fitted to offsets measured in short
    windows along `other`; None if too few confident windows span enough time.

    Short windows keep the drift within one window well under a sample, so each
    local peak stays sharp; a least-squares line through many of them averages
    out their individual errors.
    """
    window = int(WINDOW_S * rate)
    if len(oth) / rate < MIN_DRIFT_SPAN_S or len(oth) < 3 * window:
        return None
    guard = int(WINDOW_GUARD_S * rate)
    times, offsets = [], []
    for start in range(0, len(oth) - window + 1, window):
        piece = oth[start : start + window]
        centre = start + round(overall.offset_s * rate)
        if centre < 0 or centre + window > len(ref):
            continue  # this part of the stream is not (wholly) in the reference recording
        lo, hi = max(0, centre - guard), min(len(ref), centre + window + guard)
        local = gcc_phat(ref[lo:hi], piece, rate, WINDOW_GUARD_S)
        if local.confidence < WINDOW_CONFIDENCE:
            continue
        # t_ref = t_piece + local.offset + lo, with t_piece = t_other - start
        offsets.append(local.offset_s + (lo - start) / rate)
        times.append((start + window / 2) / rate)
    if len(times) < 3 or times[-1] - times[0] < MIN_DRIFT_SPAN_S / 2:
        return None
    slope, intercept = np.polyfit(np.array(times), np.array(offsets), 1)
    return float(slope), float(intercept)
