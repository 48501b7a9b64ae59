"""Finding roughly where two recordings overlap, searching every possible lag.

A camera may have started minutes before or after the recorder, and a wrong
window silently gives a wrong answer, so the first pass searches the whole
overlap (unless the user limits it) at a low rate where even two hours fit in
one FFT: 1 kHz keeps speech fundamentals and first formants, which is plenty
to land within a few tens of milliseconds of the answer. The phase transform
(GCC-PHAT) makes the peak independent of gains and room colouring.

Significance is judged against the correlation itself: with M candidate lags,
pure noise reaches about sqrt(2 ln M) standard deviations, so a peak must
clear that by a margin and beat the best peak elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

COARSE_RATE = 1000
MIN_OVERLAP_S = 2.0
CHUNK = 1 << 18


@dataclass(frozen=True)
class Coarse:
    lag: float  # samples at `rate`: reference index = other index + lag
    rate: int
    salience: float  # peak height in robust standard deviations of the correlation
    runner_up: float  # best peak more than 50 ms away, same units
    runner_up_lag: float  # where that peak is (samples at `rate`)
    expected_noise: float  # what noise alone would reach over the searched lags


def decimate(samples: np.ndarray, rate: int, target: int = COARSE_RATE) -> np.ndarray:
    """Means of consecutive n samples, in chunks so a long track is never copied whole.

    A boxcar lets some aliasing through, but both tracks alias alike, so the
    coarse lag does not move; it avoids scipy.signal's import time and memory.
    """
    factor = max(1, rate // target)
    count = len(samples) // factor
    out = np.empty(count, dtype=np.float32)
    for start in range(0, count, CHUNK):
        stop = min(count, start + CHUNK)
        piece = samples[start * factor : stop * factor].astype(np.float32)
        out[start:stop] = piece.reshape(-1, factor).mean(axis=1)
    return out


def _whitened_spectrum(samples: np.ndarray, size: int) -> np.ndarray:
    centred = samples - np.float32(samples.mean())
    spectrum = fft.rfft(centred, size, workers=-1)
    spectrum /= np.maximum(np.abs(spectrum), np.float32(1e-20))
    return spectrum


def search(
    reference: np.ndarray, other: np.ndarray, rate: int, max_lag_s: float | None
) -> Coarse | None:
    """The best lag over the whole overlap (or +-max_lag_s); None when nothing overlaps."""
    min_overlap = int(min(MIN_OVERLAP_S * rate, len(reference) // 2, len(other) // 2))
    low, high = -(len(other) - min_overlap), len(reference) - min_overlap
    if max_lag_s is not None:
        low, high = max(low, -int(max_lag_s * rate)), min(high, int(max_lag_s * rate))
    if high <= low:
        return None
    size = fft.next_fast_len(len(reference) + len(other), real=True)
    cross = _whitened_spectrum(reference, size)
    cross *= np.conj(_whitened_spectrum(other, size))
    corr = fft.irfft(cross, size, workers=-1)
    del cross
    # lags low..high, where corr[l] = sum reference[n + l] * other[n]
    lags = np.concatenate([corr[low:], corr[: high + 1]]) if low < 0 else corr[low : high + 1]
    del corr
    centre = np.median(lags)
    spread = 1.4826 * float(np.median(np.abs(lags - centre))) or 1e-12
    scores = (lags - centre) / spread
    peak = int(np.argmax(scores))
    guard = int(0.05 * rate)
    elsewhere = np.concatenate([scores[: max(0, peak - guard)], scores[peak + guard + 1 :]])
    runner_up = float(elsewhere.max()) if len(elsewhere) else 0.0
    second = int(np.argmax(elsewhere)) if len(elsewhere) else peak
    second += 0 if second < max(0, peak - guard) else 2 * guard + 1 - max(0, guard - peak)
    return Coarse(
        lag=float(peak + low),
        rate=rate,
        salience=float(scores[peak]),
        runner_up=runner_up,
        runner_up_lag=float(second + low),
        expected_noise=float(np.sqrt(2 * np.log(max(len(scores), 2)))),
    )
