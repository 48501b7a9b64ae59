"""The direct-path offset and the clock drift, from short frames along the overlap.

Why frames and onsets: in a room each camera hears the talker's direct sound
followed by reflections, so one long cross-correlation has a peak for every
pair of arrivals, several of them nearly as high as the direct-direct one
within +-25 ms. The direct sound dominates only at onsets, before the room's
tail has built up (the precedence effect). Each short frame's cross-spectrum
is phase-whitened (PHAT) and weighted, per frequency, by how much the frame's
power in that band exceeds what the decaying tail of earlier frames predicts,
in both recordings; stationary noise and reverberant tails get weight ~0.

Why blocks and a drift search: frames are summed into blocks of a few seconds,
each taken at the lag predicted so far. A clock drift moves the lag along the
recording; instead of fitting a line through noisy per-block peaks (which under
reverberation often sit on an echo), every candidate drift re-phases the blocks
and sums them, and the drift that gives the sharpest combined peak wins. The
combined correlation then uses all the recording's onsets at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mdivicom_sync_audio.io import Audio

BLOCK_S = 4.0
FRAME_S = 0.128
SEARCH_S = 0.05
TAIL_DB_PER_S = 60 / 0.8  # decay of a 0.8 s RT60 room: slower tails are still caught
ONSET_MARGIN = 4.0
OVERSAMPLE = 8
MAX_DRIFT_PPM = 250.0
RIVAL_RATIO = 0.6
DETERMINED_RATIO = 1.5
CANDIDATE_RATIO = 0.5
ECHO_MIN_S = 0.0005
ECHO_MAX_S = 0.025
ECHO_WEIGHT = 0.5


@dataclass
class Blocks:
    times_s: np.ndarray  # block centres, in the other stream's sample time
    shifts: np.ndarray  # integer lag (samples) each block was taken at
    spectra: np.ndarray  # (blocks, bins) onset-weighted, whitened cross-spectra
    log_ratio: np.ndarray  # (bins,) onset-weighted mean of log|X_ref|^2 - log|X_other|^2
    weights: np.ndarray  # total weight per block
    frame: int
    rate: int = 8000


@dataclass
class Fine:
    lag: float  # samples: reference index = other index * (1 + drift) + lag
    drift: float  # fraction (ppm * 1e-6)
    drift_span_s: float
    drift_pinned: bool  # False: no span's sound told drifts apart (drift taken as 0)
    block_lags: np.ndarray  # each usable block's own peak (samples, on the line's scale)
    block_times: np.ndarray
    curve_lags_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    peak_height: float = 0.0
    rival_ratio: float = 0.0  # highest other peak within the search span / chosen
    rival_distance_ms: float = 0.0  # farthest peak at least RIVAL_RATIO as high
    block_spread_ms: float = 0.0


def _frames(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    count = 1 + (len(samples) - frame) // hop
    strides = (samples.strides[0] * hop, samples.strides[0])
    view = np.lib.stride_tricks.as_strided(samples, (count, frame), strides)
    return np.fft.rfft(view * np.hanning(frame), 2 * frame)


def _onset_weight(power: np.ndarray, hop_s: float) -> np.ndarray:
    """Per frame and band: how far the power rises above the decaying tail of the past."""
    decay = 10 ** (-TAIL_DB_PER_S * hop_s / 10)
    tail = np.empty_like(power)
    tail[0] = power[0]
    for index in range(1, len(power)):
        tail[index] = np.maximum(tail[index - 1] * decay, power[index - 1])
    return np.clip(1 - ONSET_MARGIN * tail / np.maximum(power, 1e-30), 0, 1)


def collect_blocks(ref: Audio, oth: Audio, lag_at: np.ndarray, times: np.ndarray) -> Blocks:
    """Onset-weighted cross-spectra of blocks starting at `times` (other's samples)."""
    rate = ref.rate
    frame = 1 << int(np.ceil(np.log2(FRAME_S * rate)))
    hop = frame // 4
    block = int(BLOCK_S * rate)
    lead = int(1.0 * rate)  # history so the first frames know the tail before them
    spectra, weights, centres, shifts = [], [], [], []
    log_ratio = np.zeros(frame + 1)
    for start, lag in zip(times, lag_at, strict=True):
        shift = round(lag)
        seg_o = oth.segment(start - lead, start + block)
        seg_r = ref.segment(start + shift - lead, start + shift + block)
        x_o, x_r = _frames(seg_o, frame, hop), _frames(seg_r, frame, hop)
        w = _onset_weight(np.abs(x_o) ** 2, hop / rate) * _onset_weight(
            np.abs(x_r) ** 2, hop / rate
        )
        skip = lead // hop
        cross = x_r[skip:] * np.conj(x_o[skip:])
        cross /= np.maximum(np.abs(cross), 1e-30)
        spectra.append((w[skip:] * cross).sum(axis=0))
        weights.append(float(w[skip:].sum()))
        ratio = np.log(np.abs(x_r[skip:]) ** 2 + 1e-30) - np.log(np.abs(x_o[skip:]) ** 2 + 1e-30)
        log_ratio += (w[skip:] * ratio).sum(axis=0)
        centres.append((start + block / 2) / rate)
        shifts.append(shift)
    return Blocks(
        times_s=np.array(centres),
        shifts=np.array(shifts, dtype=float),
        spectra=np.array(spectra),
        log_ratio=log_ratio / max(float(np.sum(weights)), 1e-30),
        weights=np.array(weights),
        frame=frame,
    )


def _combined(blocks: Blocks, drift: float, base: int, mid_s: float, rate: int) -> np.ndarray:
    """Blocks re-phased to the line `lag(t) = lag(mid) + drift * (t - mid)` and summed.

    The sum's correlation peaks at lag(mid) - base.
    """
    size = 2 * blocks.frame
    bins = np.arange(size // 2 + 1)
    delta = drift * (blocks.times_s - mid_s) * rate - blocks.shifts + base
    phase = np.exp(2j * np.pi * np.outer(delta, bins) / size)
    return (blocks.spectra * phase).sum(axis=0)


def _curve(spectrum: np.ndarray, frame: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Oversampled correlation within +-SEARCH_S: (lags in samples, values)."""
    size = 2 * frame * OVERSAMPLE
    corr = np.fft.irfft(spectrum, size) * OVERSAMPLE
    reach = int(SEARCH_S * rate * OVERSAMPLE)
    values = np.concatenate([corr[-reach:], corr[: reach + 1]])
    return np.arange(-reach, reach + 1) / OVERSAMPLE, values


def _peak(lags: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    index = int(np.argmax(values))
    if 0 < index < len(values) - 1:
        left, centre, right = values[index - 1 : index + 2]
        denominator = left - 2 * centre + right
        if denominator < 0:
            offset = 0.5 * (left - right) / denominator
            step = lags[1] - lags[0]
            return float(lags[index] + offset * step), float(
                centre - 0.25 * (left - right) * offset
            )
    return float(lags[index]), float(values[index])


def _echo_score(
    lags: np.ndarray, values: np.ndarray, pattern: np.ndarray, candidate: float, rate: int
) -> float:
    """How well the correlation around `candidate` looks like the direct-direct peak.

    Beside the direct-direct peak, the reference's own reflections appear at
    positive lags and the other's at negative lags; `pattern` (the cepstrum of
    the two recordings' log power ratio) has the reference's reflection delays
    as positive and the other's as negative peaks. An echo peak instead has the
    direct peak on the wrong side at one of those delays, which scores negative.
    """
    u = np.arange(int(ECHO_MIN_S * rate), int(ECHO_MAX_S * rate))
    after = np.interp(candidate + u, lags, values, left=0.0, right=0.0)
    before = np.interp(candidate - u, lags, values, left=0.0, right=0.0)
    return float(np.sum((after - before) * pattern[u]))


def _direct_path(
    lags: np.ndarray, values: np.ndarray, blocks: Blocks, rate: int
) -> tuple[float, float]:
    """Among the strong peaks, the one whose surroundings say "direct sound"."""
    top = float(values.max())
    local = np.r_[False, (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]), False]
    candidates = np.flatnonzero(local & (values >= CANDIDATE_RATIO * top))
    pattern = np.fft.irfft(blocks.log_ratio, 2 * blocks.frame)
    if len(candidates) <= 1:
        return _peak(lags, values)
    scores = np.array([_echo_score(lags, values, pattern, lags[i], rate) for i in candidates])
    # height and echo test together: the test alone is noisy when reflections are weak
    merit = values[candidates] / top + ECHO_WEIGHT * scores / (np.max(np.abs(scores)) or 1.0)
    best = candidates[int(np.argmax(merit))]
    lo, hi = max(0, best - 1), min(len(values), best + 2)
    return _peak(lags[lo:hi], values[lo:hi])


def _best_drift(
    blocks: Blocks, centre: float, reach: float, base: int, mid_s: float
) -> tuple[float, bool]:
    """The drift within centre +- reach whose re-phased blocks give the highest peak.

    The grid is walked with one complex multiply per block and bin per step
    (the phase of each step is the previous one's times a constant), which
    keeps thousands of candidate drifts cheap on long recordings. The drift is
    determined only when the best peak stands out (1.5x the median over the
    grid): one lone clap in the span fits every drift equally well.
    """
    rate = blocks.rate
    step = 0.5 / ((blocks.times_s[-1] - blocks.times_s[0]) * rate)  # half a sample over the span
    grid = np.arange(centre - reach, centre + reach + step / 2, step)
    size = 2 * blocks.frame
    bins = np.arange(size // 2 + 1)
    reach_lags = int(SEARCH_S * rate)
    spectra = blocks.spectra * np.exp(
        2j
        * np.pi
        * np.outer(grid[0] * (blocks.times_s - mid_s) * rate - blocks.shifts + base, bins)
        / size
    )
    advance = np.exp(2j * np.pi * np.outer(step * (blocks.times_s - mid_s) * rate, bins) / size)
    scores = np.empty(len(grid))
    for index in range(len(grid)):
        corr = np.fft.irfft(spectra.sum(axis=0), size)
        scores[index] = max(corr[-reach_lags:].max(), corr[: reach_lags + 1].max())
        spectra *= advance
    best = int(np.argmax(scores))
    drift = float(grid[best])
    if 0 < best < len(grid) - 1:
        left, centre_score, right = scores[best - 1 : best + 2]
        denominator = left - 2 * centre_score + right
        if denominator < 0:
            drift += float(0.5 * (left - right) / denominator * step)
    return drift, bool(scores[best] >= DETERMINED_RATIO * np.median(scores))


def refine(ref: Audio, oth: Audio, coarse_lag: float, estimate_drift: bool) -> Fine | None:
    """Direct-path lag (and drift) near `coarse_lag` (samples at the analysis rate).

    Long recordings are taken in growing spans around the middle of the overlap
    (30 s, then 4x wider each time), each span's drift narrowing the search of
    the next and placing its blocks where the lag has moved to.
    """
    rate = ref.rate
    block = int(BLOCK_S * rate)
    first = max(0, int(np.ceil(-coarse_lag)))
    last = min(len(oth.samples), int(len(ref.samples) - coarse_lag))
    if last - first < rate:
        return None
    every = np.arange(first, max(first + 1, last - block // 2), block)
    mid_s = (first + last) / 2 / rate
    half_s, drift, reach = 15.0, 0.0, MAX_DRIFT_PPM * 1e-6
    pinned = False
    lag_mid = coarse_lag
    while True:
        centres = (every + block / 2) / rate
        chosen = every[np.abs(centres - mid_s) <= half_s + BLOCK_S / 2]
        if not len(chosen):
            chosen = every
        predicted = lag_mid + drift * ((chosen + block / 2) / rate - mid_s) * rate
        blocks = collect_blocks(ref, oth, predicted, chosen)
        blocks.rate = rate
        base = round(lag_mid)
        span = blocks.times_s[-1] - blocks.times_s[0] if len(chosen) > 1 else 0.0
        # until a span's sound pins the drift down, the search stays wide open
        determined = False
        if estimate_drift and span > 0 and blocks.weights.sum() > 0:
            found, determined = _best_drift(blocks, drift, reach, base, mid_s)
            # once pinned, the narrowed grid is all near the peak: its refinement counts
            if determined or pinned:
                drift = found
                pinned = True
        spectrum = _combined(blocks, drift, base, mid_s, rate)
        lag_mid = base + _peak(*_curve(spectrum, blocks.frame, rate))[0]
        if len(chosen) == len(every):
            break
        half_s *= 4
        if span > 0 and determined:
            reach = max(4 * 0.5 / (span * rate), 2e-6)
    if not blocks.weights.sum() > 0:
        return None
    base = round(lag_mid)
    spectrum = _combined(blocks, drift, base, mid_s, rate)
    lags, values = _curve(spectrum, blocks.frame, rate)
    lag, height = _direct_path(lags, values, blocks, rate)
    # the highest other peak in the search span, at least 0.5 ms away
    away = np.abs(lags - lag) > 0.0005 * rate
    rivals = np.where(away, values, -np.inf)
    # rivals are local maxima (not the chosen peak's own flank); the farthest one
    # that comes close in height says how wrong the choice could be
    local = np.r_[False, (rivals[1:-1] > rivals[:-2]) & (rivals[1:-1] >= rivals[2:]), False]
    strong = local & (rivals >= RIVAL_RATIO * height)
    rival_ratio = float(np.max(np.where(local, rivals, -np.inf)) / height) if local.any() else 0.0
    rival_distance = (
        float(np.max(np.abs(lags[strong] - lag))) / rate * 1000 if strong.any() else 0.0
    )
    # each block's own peak near the combined one: their scatter measures the noise
    own, own_times = [], []
    bins = np.arange(blocks.frame + 1)
    for index in range(len(blocks.times_s)):
        if blocks.weights[index] <= 0:
            continue
        delta = drift * (blocks.times_s[index] - mid_s) * rate - blocks.shifts[index] + base
        single = blocks.spectra[index] * np.exp(2j * np.pi * bins * delta / (2 * blocks.frame))
        b_lags, b_values = _curve(single, blocks.frame, rate)
        near = np.abs(b_lags - lag) <= 0.001 * rate
        if near.sum() > 2:
            own.append(_peak(b_lags[near], b_values[near])[0])
            own_times.append(blocks.times_s[index])
    own_arr = np.array(own)
    spread = (
        1.4826 * float(np.median(np.abs(own_arr - np.median(own_arr)))) / rate * 1000
        if len(own_arr) >= 3
        else float("nan")
    )
    lag_mid = base + lag
    return Fine(
        lag=lag_mid - drift * mid_s * rate,
        drift=drift,
        drift_span_s=float(span),
        drift_pinned=pinned,
        block_lags=own_arr + base + drift * (np.array(own_times) - mid_s) * rate,
        block_times=np.array(own_times),
        curve_lags_ms=(lags - lag) / rate * 1000,  # 0 at the chosen peak
        curve=values / max(height, 1e-30),
        peak_height=height,
        rival_ratio=rival_ratio,
        rival_distance_ms=float(rival_distance),
        block_spread_ms=spread,
    )
