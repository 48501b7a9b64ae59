"""Finding the overlap on pieces of a recording when a clock drift smears the whole.

The whole-overlap search (coarse.search) adds every second of the overlap at
one lag. A clock drift moves the lag along the recording, so the match is
spread over every lag it passes through and its height falls with the
recording's length: at the 0.1 % of video conformed to 29.97 fps, a
20-minute camera passes through 1.2 s of lags and its best peak no longer
clears what noise reaches. Such a camera then failed with "no common sound
found", though each half minute of it matches plainly.

So when the whole search finds nothing, pieces of PIECE_S (a drift of 1200
ppm moves the lag 36 ms across one) are each searched against the whole
reference, and the answer is the line that most pieces' best lags lie on,
its slope within the drifts the direct-path stage measures. Pieces of
unrelated sound put their best lag anywhere among the millions searched, so
the chance that several land on one line is computed (`chance`) and the line
is kept only when that is negligible and no other line is nearly as well
supported (a repeated sound would give several). Only the middle of the line
is used: the direct-path stage measures the drift itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from mdivicom_sync_audio import coarse, fine

PIECE_S = 30.0
MAX_PIECES = 24  # spread over the recording: hours of audio cost a few dozen FFTs
MIN_PIECES = 3  # agreeing on one line
TOLERANCE_S = 0.05  # a piece's best lag may sit on an echo or anywhere along its own smear
CHANCE_LIMIT = 1e-3  # expected number of lines this good from unrelated sound alone
RIVAL_RATIO = 0.8  # another line with this share of the pieces: the match is ambiguous


@dataclass(frozen=True)
class Line:
    lag: float  # samples at `rate` at the middle of `other` (reference index = other index + lag)
    slope: float  # lag change per sample of `other`: the drift, roughly
    agreeing: int  # pieces whose best lag lies on the line
    salience: float  # median height of the agreeing pieces' peaks, robust sd

    def lag_at(self, index: float, length: int) -> float:
        """The lag at sample `index` of `other` (of `length` samples)."""
        return self.lag + self.slope * (index - length / 2)


@dataclass(frozen=True)
class _Piece:
    centre: float  # sample index in `other`
    lag: float
    salience: float


def _best_lags(
    reference: np.ndarray, other: np.ndarray, low: int, high: int, length: int
) -> tuple[list[_Piece], int]:
    """Each piece's best lag within low..high, and how many lags each searched.

    A piece is correlated with the part of the reference its lags can reach
    (the whole reference when the range is the whole overlap, whose spectrum
    is then computed once)."""
    count = min(MAX_PIECES, len(other) // length)
    starts = np.linspace(0, len(other) - length, count).round().astype(int).tolist()
    cached: tuple[int, np.ndarray] | None = None
    found: list[_Piece] = []
    searched = 0
    for start in starts:
        piece = other[start : start + length]
        # reference index = piece index + start + lag, for lags low..high
        first, stop = max(0, start + low), min(len(reference), start + length + high)
        if stop - first < length // 2 or not np.any(piece):
            continue
        size = coarse.fast_length(stop - first + length)
        if (first, stop) == (0, len(reference)):
            if cached is None or cached[0] != size:
                cached = (size, coarse.whitened_spectrum(reference, size))
            spectrum = cached[1]
        else:
            spectrum = coarse.whitened_spectrum(reference[first:stop], size)
        cross = coarse.whitened_spectrum(piece, size)
        np.conj(cross, out=cross)
        cross *= spectrum
        corr = np.fft.irfft(cross, size)
        del cross
        # corr[l] = sum window[n + l] * piece[n]: the lag of `other` is l + first - start
        lo, hi = max(low, first - start - length + 1), min(high, stop - 1 - start)
        values = corr[np.arange(lo + start - first, hi + start - first + 1) % size]
        del corr
        centre, spread = coarse.robust_level(values[::8])
        peak = int(np.argmax(values))
        searched = max(searched, len(values))
        found.append(
            _Piece(
                centre=float(start + length / 2),
                lag=float(lo + peak),
                salience=(float(values[peak]) - centre) / spread,
            )
        )
    return found, searched


def _chance(
    pieces: list[_Piece], agreeing: int, lags: int, tolerance: float, slope: float
) -> float:
    """The expected number of lines through `agreeing` or more pieces if every
    piece's best lag were anywhere among `lags` (unrelated sound): the pairs
    whose slope is allowed, times the odds that enough of the rest fall within
    the tolerance of their line."""
    n = len(pieces)
    if agreeing < 2 or n < 2:
        return float("inf")
    centres = np.array([p.centre for p in pieces])
    apart = np.abs(centres[:, None] - centres[None, :])[np.triu_indices(n, 1)]
    pairs = float(np.sum(np.minimum(1.0, (2 * slope * apart + 2 * tolerance + 1) / lags)))
    hit = min(1.0, (2 * tolerance + 1) / lags)
    rest = n - 2
    tail = sum(
        comb(rest, k) * hit**k * (1 - hit) ** (rest - k) for k in range(agreeing - 2, rest + 1)
    )
    return pairs * tail


def _on_line(
    centres: np.ndarray, lags: np.ndarray, i: int, j: int, tolerance: float
) -> tuple[np.ndarray, float]:
    """The pieces within `tolerance` of the line through pieces i and j, and its slope."""
    slope = (lags[j] - lags[i]) / (centres[j] - centres[i])
    return np.abs(lags - (lags[i] + slope * (centres - centres[i]))) <= tolerance, float(slope)


def search(reference: np.ndarray, other: np.ndarray, rate: int, low: int, high: int) -> Line | None:
    """The line most pieces of `other` agree on, or None when no line is clear.

    Both recordings at `rate`; lags (reference index = other index + lag) are
    searched from `low` to `high` samples.
    """
    length = round(PIECE_S * rate)
    if len(other) < MIN_PIECES * length:
        return None
    pieces, lags = _best_lags(reference, other, low, high, length)
    if len(pieces) < MIN_PIECES:
        return None
    tolerance = TOLERANCE_S * rate
    slope_limit = fine.WIDE_DRIFT_PPM * 1e-6
    centres = np.array([p.centre for p in pieces])
    best = np.array([p.lag for p in pieces])
    lines: list[tuple[int, np.ndarray, float]] = []
    for i in range(len(pieces)):
        for j in range(i + 1, len(pieces)):
            members, slope = _on_line(centres, best, i, j, tolerance)
            if abs(slope) <= slope_limit:
                lines.append((int(members.sum()), members, slope))
    if not lines:
        return None
    lines.sort(key=lambda line: -line[0])
    count, members, _ = lines[0]
    slope, intercept = np.polyfit(centres[members] - len(other) / 2, best[members], 1)
    # another line that most pieces off this one agree on: a repeated sound
    rival = max(
        (c for c, m, _ in lines if not np.any(m & members)),
        default=0,
    )
    chance = _chance(pieces, count, lags, tolerance, slope_limit)
    if count < MIN_PIECES or chance > CHANCE_LIMIT or rival >= RIVAL_RATIO * count:
        return None
    return Line(
        lag=float(intercept),
        slope=float(slope),
        agreeing=count,
        salience=float(np.median([p.salience for p, m in zip(pieces, members, strict=True) if m])),
    )
