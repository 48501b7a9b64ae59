"""Finding roughly where two recordings overlap, searching every possible lag.

A camera may have started minutes before or after the recorder, and a wrong
window silently gives a wrong answer, so the first pass searches the whole
overlap (unless the user limits it) at a low rate where even two hours fit in
one FFT: 1 kHz keeps speech fundamentals and first formants, which is plenty
to land within a few tens of milliseconds of the answer. The phase transform
(GCC-PHAT) makes the peak independent of gains and room colouring.

A clock drift smears that peak over every lag the recording passes through,
so the lag where the next stage starts, the middle of the overlap, is found
again on the middle stretch alone (at_middle), and on a long recording from
the line its pieces agree on (pieces.py).

Significance is judged against the correlation itself: with M candidate lags,
pure noise reaches about sqrt(2 ln M) standard deviations, so a peak must
clear that by a margin and beat the best peak elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COARSE_RATE = 1000
MIN_OVERLAP_S = 2.0
CHUNK = 1 << 18
CANDIDATE_REACH_S = 0.25
CANDIDATE_RATIO = 0.6
CANDIDATE_GAP_S = 0.02
MAX_CANDIDATES = 6
MIDDLE_S = 30.0  # the stretch the direct-path stage starts on (see at_middle)
CHANCE_STEP = 32  # samples: the resolution of scores_against_chance's spread
SPLIT_MIN = 1 << 20  # below this the FFT's working memory does not matter


@dataclass(frozen=True)
class Coarse:
    lag: float  # samples at `rate`: reference index = other index + lag
    rate: int
    salience: float  # peak height in robust standard deviations of the correlation
    runner_up: float  # best peak more than 50 ms away, same units
    runner_up_lag: float  # where that peak is (samples at `rate`)
    expected_noise: float  # what noise alone would reach over the searched lags
    candidates: tuple[float, ...] = ()  # strong local peaks near the best (samples at `rate`)


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


def fast_length(minimum: int) -> int:
    """The smallest 2^a 3^b 5^c >= minimum: FFT sizes that are fast, and much
    closer to the need than the next power of two (memory on long tracks)."""
    best = 1 << max(0, (minimum - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < minimum:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def real_spectrum(samples: np.ndarray, size: int) -> np.ndarray:
    """`np.fft.rfft(samples, size)`, from two half-size transforms when size is large.

    numpy's real FFT briefly needs about 30 bytes per point, ~260 MiB for the
    9 M points of a 2-hour recording against a 30-minute one at 1 kHz: the
    largest single allocation of a whole run. One decimation-in-time step
    (the even and the odd samples transformed apart, then combined with the
    twiddle factors) halves that peak for one extra pass over the spectrum.
    """
    if size < SPLIT_MIN or size % 4 or len(samples) > size:
        return np.fft.rfft(samples, size)
    half, quarter = size // 2, size // 4
    even = np.fft.rfft(samples[0::2], half)
    odd = np.fft.rfft(samples[1::2], half)
    out = np.empty(half + 1, dtype=even.dtype)
    for start in range(0, half + 1, CHUNK):
        k = np.arange(start, min(half + 1, start + CHUNK))
        # bins above a quarter come from the mirrored bins of the half-size spectra
        low = k <= quarter
        index = np.where(low, k, half - k)
        e, o = even[index], odd[index]
        e = np.where(low, e, np.conj(e))
        o = np.where(low, o, np.conj(o))
        twiddle = np.exp(-2j * np.pi * k / size).astype(even.dtype)
        out[start : start + len(k)] = e + twiddle * o
    return out


def whitened_spectrum(samples: np.ndarray, size: int) -> np.ndarray:
    spectrum = real_spectrum(samples, size)
    spectrum[0] = 0  # the mean carries no timing
    spectrum /= np.maximum(np.abs(spectrum), np.float32(1e-20))
    return spectrum


def whitened_correlation(reference: np.ndarray, other: np.ndarray, size: int) -> np.ndarray:
    """corr[l] = sum reference[n + l] * other[n], circular over `size` points, with
    both spectra whitened (GCC-PHAT)."""
    cross = whitened_spectrum(reference, size)
    cross *= np.conj(whitened_spectrum(other, size))
    return np.fft.irfft(cross, size)


def noise_reach(lags: int) -> float:
    """How high, in standard deviations, the best of `lags` scores of pure noise
    gets: about sqrt(2 ln M). A peak is judged against this, plus a margin."""
    return float(np.sqrt(2 * np.log(max(lags, 2))))


def robust_level(sample: np.ndarray) -> tuple[float, float]:
    """The median and the spread (1.4826 MAD, a standard deviation for Gaussian
    noise) of a correlation: what its peaks are measured against."""
    centre = float(np.median(sample))
    return centre, 1.4826 * float(np.median(np.abs(sample - centre))) or 1e-12


def scores_near(window: np.ndarray, piece: np.ndarray, offset: int, reach: int) -> np.ndarray:
    """The whitened correlation of `piece` against `window` at lags offset-reach ..
    offset+reach (window index = piece index + lag), in robust standard deviations."""
    size = fast_length(len(window) + len(piece))
    corr = whitened_correlation(window, piece, size)
    values = corr[np.arange(offset - reach, offset + reach + 1) % size]
    centre, spread = robust_level(values)
    return (values - centre) / spread


def scores_against_chance(
    window: np.ndarray, piece: np.ndarray, offset: int, reach: int
) -> np.ndarray:
    """Like scores_near, but each lag's value over what unrelated sound would give
    there.

    The robust spread of scores_near is one level for every lag. When the
    window holds a loud sound (a cue) and the piece only noise, the lags at
    which the piece lies over that sound spread far wider than the rest, and
    a chance peak among them reaches 8-12 of those standard deviations. With
    the two whitened signals w (window) and p (piece) independent, the
    correlation at lag l has variance sum_n w[n+l]^2 p[n]^2, itself a
    correlation of the squares: dividing by its root leaves every lag the
    same spread, whatever the window holds. The squares are summed over
    CHANCE_STEP samples first (a loud sound's level changes over tens of
    milliseconds, not samples), so this costs two FFTs more than scores_near,
    not five. The continuity check, which asks whether a stretch matches at
    all, uses it; the searches, which ask where the best match is, do not.
    """
    size = fast_length(len(window) + len(piece))
    w = whitened_spectrum(window, size)
    p = whitened_spectrum(piece, size)
    corr = np.fft.irfft(w * np.conj(p), size)
    steps = -(-size // CHANCE_STEP)
    energy = []
    for spectrum in (w, p):
        power = np.zeros(steps * CHANCE_STEP)
        power[:size] = np.fft.irfft(spectrum, size) ** 2
        energy.append(np.fft.rfft(power.reshape(steps, CHANCE_STEP).sum(axis=1)))
    coarse_spread = np.fft.irfft(energy[0] * np.conj(energy[1]), steps)
    lags = np.arange(offset - reach, offset + reach + 1)
    spread = np.interp(lags % size / CHANCE_STEP, np.arange(steps), coarse_spread)
    values = corr[lags % size] / np.sqrt(np.maximum(spread, 1e-30))
    centre, level = robust_level(values)
    return (values - centre) / level


@dataclass(frozen=True)
class Middle:
    lag: float  # samples at the search's rate, like Coarse.lag
    salience: float  # robust standard deviations, like Coarse.salience
    expected_noise: float


def at_middle(reference: np.ndarray, other: np.ndarray, lag: float, reach: int) -> Middle | None:
    """The best lag within +-reach of `lag` for the middle MIDDLE_S of the overlap.

    With a clock drift the lag moves along the recording (0.6 s over 10
    minutes at 1000 ppm), so the whole-overlap peak is smeared over every lag
    the recording passes through and its top can be anywhere along them; the
    direct-path stage starts at the middle of the overlap and needs the lag
    there. None when the overlap is not longer than the middle stretch.
    """
    first = max(0, -round(lag))
    last = min(len(other), len(reference) - round(lag))
    half = round(MIDDLE_S * COARSE_RATE) // 2  # samples at the search's rate
    if last - first <= 2 * half:
        return None
    centre = (first + last) // 2
    piece = other[centre - half : centre + half]
    start = max(0, centre - half + round(lag) - reach)
    window = reference[start : centre + half + round(lag) + reach]
    offset = centre - half + round(lag) - start
    scores = scores_near(window, piece, offset, reach)
    peak = int(np.argmax(scores))
    return Middle(
        lag=float(round(lag) + peak - reach),
        salience=float(scores[peak]),
        expected_noise=noise_reach(len(scores)),
    )


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
    size = fast_length(len(reference) + len(other))
    corr = whitened_correlation(reference, other, size)
    # lags low..high, where corr[l] = sum reference[n + l] * other[n]
    lags = np.concatenate([corr[low:], corr[: high + 1]]) if low < 0 else corr[low : high + 1]
    del corr
    # robust level and spread from every 8th lag, and scores in place: on hours
    # of audio each temporary copy of the correlation is tens of MB
    centre, spread = robust_level(lags[::8])
    scores = lags
    scores -= centre
    scores /= spread
    peak = int(np.argmax(scores))
    guard = int(0.05 * rate)
    elsewhere = np.concatenate([scores[: max(0, peak - guard)], scores[peak + guard + 1 :]])
    runner_up = float(elsewhere.max()) if len(elsewhere) else 0.0
    second = int(np.argmax(elsewhere)) if len(elsewhere) else peak
    second += 0 if second < max(0, peak - guard) else 2 * guard + 1 - max(0, guard - peak)
    # in a room the best coarse peak may be a late echo tens of ms off: the strong
    # peaks near it say how far off it could be
    reach = int(CANDIDATE_REACH_S * rate)
    lo, hi = max(1, peak - reach), min(len(scores) - 1, peak + reach + 1)
    near = scores[lo - 1 : hi + 1]
    local = np.flatnonzero((near[1:-1] > near[:-2]) & (near[1:-1] >= near[2:])) + lo
    strong = local[scores[local] >= CANDIDATE_RATIO * scores[peak]]
    chosen: list[int] = []
    for index in strong[np.argsort(scores[strong])[::-1]]:
        if all(abs(index - c) >= CANDIDATE_GAP_S * rate for c in chosen):
            chosen.append(int(index))
        if len(chosen) == MAX_CANDIDATES:
            break
    return Coarse(
        lag=float(peak + low),
        rate=rate,
        salience=float(scores[peak]),
        runner_up=runner_up,
        runner_up_lag=float(second + low),
        expected_noise=noise_reach(len(scores)),
        candidates=tuple(float(c + low) for c in chosen) or (float(peak + low),),
    )
