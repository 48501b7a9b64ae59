"""One stream against the reference: offset, drift, and an error bound that can be trusted.

Convention: t_reference = t_stream * (1 + drift_ppm * 1e-6) + offset_s, where
both times are each container's presentation time (see io.py).

The error bound (`error_bound_ms`) is what a user should read as "the offset is
within this many milliseconds of where the direct sound aligns". It is the
noise of the chosen peak (3 standard errors of the per-block peaks, with a
floor for the analysis rate) plus the distance to the farthest alternative the
evidence did not rule out: the peak that either half of the blocks picks on
its own, a peak that nearly won the direct-path test, a peak within 25 ms at
least 70 % as high as the chosen one, the peak another view of the early
reflections picks (see fine.py), or the direct-path peak near another strong
whole-overlap match that is at least 40 % as high. When
all of these agree, the bound is the noise alone (about 0.1-0.3 ms); when they
do not, it is as wide as the disagreement. When the whole-overlap search found
nothing that clears noise, there is no bound: the result is a failure, not a
number. The benchmark reports how often the bound holds, on rooms the
method was developed on and on held-out ones (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mdivicom_sync_audio import coarse, fine, pieces
from mdivicom_sync_audio.io import SILENCE_RMS, Audio, is_silent, level

MIN_DRIFT_SPAN_S = 20.0
MIN_BLOCKS = 3  # usable blocks for the scatter of their peaks to be measured
RUNNER_UP_RATIO = 0.8
FLOOR_MS = 0.1  # small systematic errors (resampling, codecs) seen on the evaluation
SIGNIFICANCE_MARGIN = 2.0
STRONG_MARGIN = 6.0  # sd over what noise reaches: pieces are then searched near the match only


class SyncProblem(Exception):
    """A stream that cannot be aligned; the message says why in one line."""


@dataclass
class Result:
    offset_s: float
    drift_ppm: float | None
    error_bound_ms: float
    drift_error_ppm: float | None
    overlap_s: float
    coarse_salience: float
    plot: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # with sound from two places: the other place's alignment (same convention)
    other_source_offsets_s: list[float] = field(default_factory=list)
    # the streams the drift was chained through (set by the network of pairs)
    drift_via: list[str] = field(default_factory=list)
    # the largest part of the bound, in words: what a doubtful result's warning says
    bound_reason: str = ""
    # what widened the drift's error, in words (set by the network of pairs)
    drift_reason: str = ""
    # where each alternative the bound covers would put the offset, in ms from it
    alternatives_ms: list[float] = field(default_factory=list)
    # the other stream's time (container seconds) at the middle of the overlap,
    # around which the offset was measured (None: not known)
    measured_at_s: float | None = None
    # the files this one's place takes to continue the file before them (seams)
    end_to_end: list[str] = field(default_factory=list)
    # the camera's file before this one, where the sound puts this file further from
    # its end than both bounds and the cut allow (separate takes): how far, in ms
    not_continuing: dict[str, float] = field(default_factory=dict)
    # the usable blocks of a pair with too few (under MIN_BLOCKS) for their peaks'
    # scatter to be measured: the bound's noise is then a guess, and the result doubtful
    # (for a chain, its pair with the fewest); None: measured
    rough_blocks: int | None = None


def check_audible(audio: Audio, stream_id: str) -> None:
    """A silent track (muted camera, unplugged microphone) cannot be synced: say so."""
    if is_silent(audio.samples):
        rms = level(audio.samples)
        raise SyncProblem(
            f"{stream_id}: {audio.path.name} is silent, nothing to sync on"
            + (
                # a float recorder's quiet take has sound under this level: say which
                f" (its level is {20 * np.log10(rms):.0f} dBFS rms, under the "
                f"{20 * np.log10(SILENCE_RMS):.0f} dBFS taken as silence: a recording "
                "that holds sound can be raised, e.g. normalised, to sync it)"
                if rms > 0
                else ""
            )
        )


def _drift_reach_s(samples: int) -> float:
    """How far the lag can move from its whole-overlap place within the largest
    drift searched: half the recording's length times the drift, and a margin."""
    return fine.WIDE_DRIFT_PPM * 1e-6 * samples / coarse.COARSE_RATE / 2 + fine.SEARCH_S


@dataclass(frozen=True)
class Start:
    found: coarse.Coarse
    lag: float  # samples at found.rate, at the middle of the overlap
    drift: float | None = None  # the slope of the line pieces agree on


def _start(
    low_ref: np.ndarray,
    low_oth: np.ndarray,
    window: float | None,
    stream_id: str,
    max_lag_s: float | None,
) -> Start:
    """The whole-overlap match, the lag (at its rate) at the middle of the
    overlap, where the direct-path stage starts, and the drift pieces suggest.

    A clock drift smears the whole-overlap match along the lags the recording
    passes through: its top can lie anywhere along them, the middle 30 s
    searched again may not clear noise in a room, and on a long recording the
    match may fall below noise (a chance peak elsewhere can then just clear
    it). So on recordings long enough, pieces of it are searched too (near the
    match when it is strong, everywhere when it is not or when they do not
    confirm it there) and the line they agree on gives the middle (pieces.py).
    """
    rate = coarse.COARSE_RATE
    found = coarse.search(low_ref, low_oth, rate, window)
    if found is None:
        raise SyncProblem(f"{stream_id}: the recordings cannot overlap within the lag limit")
    margin = found.salience - found.expected_noise
    low, high = -(len(low_oth) - 1), len(low_ref) - 1
    if window is not None:
        low, high = max(low, -round(window * rate)), min(high, round(window * rate))
    line = None
    if margin >= STRONG_MARGIN:
        ridge = round(fine.WIDE_DRIFT_PPM * 1e-6 * len(low_oth) + pieces.TOLERANCE_S * rate)
        near = max(low, round(found.lag) - ridge), min(high, round(found.lag) + ridge)
        line = pieces.search(low_ref, low_oth, rate, *near)
    if line is None:
        # the match is weak, or the pieces do not confirm it where it is (on
        # uneven sound a chance peak can stand well clear of noise): everywhere
        line = pieces.search(low_ref, low_oth, rate, low, high)
    if margin < SIGNIFICANCE_MARGIN and line is None:
        raise SyncProblem(
            f"{stream_id}: no common sound found with the reference "
            f"(best peak {found.salience:.1f} sd, noise reaches {found.expected_noise:.1f} sd, "
            f"next best {found.runner_up:.1f} sd"
            + (
                ")"
                if len(low_oth) < pieces.MIN_PIECES * pieces.PIECE_S * rate
                else f"; nor do {pieces.PIECE_S:g}-s pieces of it agree on one lag or drift)"
            )
            + ("" if max_lag_s is None else f"; the search was limited to +-{max_lag_s:g} s")
        )
    lag = found.lag
    if margin >= SIGNIFICANCE_MARGIN:
        middle = coarse.at_middle(
            low_ref, low_oth, found.lag, round(_drift_reach_s(len(low_oth)) * rate)
        )
        if (
            middle is not None
            and middle.salience >= middle.expected_noise + SIGNIFICANCE_MARGIN
            and abs(middle.lag - found.lag) > fine.ECHO_MAX_S * rate
        ):
            # a clock drift smeared the whole-overlap peak: start where the middle is
            # (a move within a room's echoes is left to the direct-path stage)
            lag = middle.lag
    if line is None:
        return Start(found, lag)
    at = line.lag_at(len(low_oth) / 2, len(low_oth))
    for _ in range(3):  # the middle of the overlap depends on the lag there
        first, last = max(0.0, -at), min(len(low_oth), len(low_ref) - at)
        at = line.lag_at((first + last) / 2, len(low_oth))
    if margin >= SIGNIFICANCE_MARGIN and abs(lag - at) <= fine.ECHO_MAX_S * rate:
        return Start(found, lag, line.slope)
    ends = sorted((line.lag_at(0, len(low_oth)), line.lag_at(len(low_oth), len(low_oth))))
    tolerance = pieces.TOLERANCE_S * rate
    if margin >= SIGNIFICANCE_MARGIN and ends[0] - tolerance <= found.lag <= ends[1] + tolerance:
        return Start(found, at, line.slope)  # on the line: its nearby peaks stay candidates
    # a chance peak, or nothing, where the pieces agree on a line elsewhere
    elsewhere = replace(
        found, lag=at, salience=line.salience, runner_up=0.0, runner_up_lag=at, candidates=(at,)
    )
    return Start(elsewhere, at, line.slope)


def align(ref: Audio, oth: Audio, stream_id: str, max_lag_s: float | None) -> Result:
    rate = ref.rate
    # lags are searched in sample indices; the containers' start times shift them
    shift_s = ref.start_s - oth.start_s
    window = None if max_lag_s is None else max_lag_s + abs(shift_s)
    low_ref = coarse.decimate(ref.samples, rate)
    low_oth = coarse.decimate(oth.samples, rate)
    start = _start(low_ref, low_oth, window, stream_id, max_lag_s)
    del low_ref, low_oth
    found = start.found
    lag0 = start.lag * rate / found.rate
    first = max(0.0, -lag0)
    last = min(len(oth.samples), len(ref.samples) - lag0)
    overlap_s = (last - first) / rate
    middle_s = (first + last) / 2 / rate  # the other's samples: where the offset is measured
    estimate_drift = overlap_s >= MIN_DRIFT_SPAN_S + fine.BLOCK_S
    candidates = [c * rate / found.rate for c in found.candidates]
    repeated = found.runner_up >= RUNNER_UP_RATIO * found.salience
    if repeated:
        # a similar sound elsewhere (a repeated beep, a loop, a late echo at 1 kHz):
        # the direct-path stage looks there too, and keeps it as a doubt unless ruled out
        candidates.append(found.runner_up_lag * rate / found.rate)
    far = (
        None
        if start.drift is None or abs(start.drift) <= fine.MAX_DRIFT_PPM * 1e-6
        else start.drift
    )
    result = fine.refine(ref, oth, lag0, estimate_drift, tuple(candidates), offered_drift=far)
    if result is None:
        first_i, last_i = fine.overlap(len(ref.samples), len(oth.samples), lag0)
        if last_i - first_i < fine.MIN_OVERLAP_S * rate:
            # a clip too short, or one its best match puts off the reference's end:
            # that is what to say, not the sound it might have
            raise SyncProblem(
                f"{stream_id}: where its sound matches best it shares "
                f"{max(0, last_i - first_i) / rate:.2f} s with the reference "
                f"({oth.path.name} is {oth.duration_s:.2f} s long), under the "
                f"{fine.MIN_OVERLAP_S:g} s needed to align it"
            )
        raise SyncProblem(f"{stream_id}: the overlap with the reference has no sound onsets")
    notes = []
    blocks = len(result.block_lags)
    floor_ms = max(FLOOR_MS, 0.8 * 1000 / rate)
    rough = blocks < MIN_BLOCKS or not np.isfinite(result.block_spread_ms)
    # with too few blocks, 1 ms is a guess: the run warns of it (`rough_blocks`)
    jitter = 1.0 if rough else 3 * max(result.block_spread_ms, floor_ms) / np.sqrt(blocks)
    # the direct path could be at a peak the evidence did not rule out: the answer
    # is then that far off, give or take the noise
    noise_ms = max(jitter, floor_ms)
    bound = noise_ms + result.rival_distance_ms
    parts = [
        (noise_ms, f"the blocks' own peaks scatter ({noise_ms:.2f} ms)"),
        (result.rival_distance_ms, result.rival_reason),
    ]
    if repeated and candidates[-1] in result.far_kept:
        notes.append(
            f"{stream_id}: a second match {found.runner_up / found.salience:.0%} as strong "
            f"lies {abs(found.runner_up_lag - found.lag) / found.rate:.2f} s away"
        )
    drift_ppm = drift_error = None
    if estimate_drift and result.drift_pinned and result.drift_span_s >= MIN_DRIFT_SPAN_S:
        drift_ppm = result.drift * 1e6
        times = result.block_times
        if blocks >= 4:
            fitted = np.polyfit(times, result.block_lags, 1)
            residual = result.block_lags - np.polyval(fitted, times)
            scale = np.sqrt(
                np.sum(residual**2) / (blocks - 2) / np.sum((times - times.mean()) ** 2)
            )
            drift_error = float(3 * max(scale, 0.25 / (result.drift_span_s * rate)) / rate * 1e6)
    if drift_error is not None:
        # offset_s is at the stream's time zero, extrapolated from the middle of
        # the overlap along the drift line: the slope's uncertainty counts there
        carried_ms = drift_error * 1e-6 * middle_s * 1000
        bound += carried_ms
        parts.append(
            (carried_ms, f"a drift good to +-{drift_error:.1f} ppm carries it to time zero")
        )
    if result.drift_refuted:
        # no drift within the search held, so the clocks may differ by more: the
        # offset, measured at the middle, is carried to time zero by at least that
        carried_ms = fine.WIDE_DRIFT_PPM * 1e-6 * middle_s * 1000
        bound += carried_ms
        notes.append(
            f"{stream_id}: no clock drift within +-{fine.WIDE_DRIFT_PPM:g} ppm of the "
            "reference's held on its sound, so none is given; a clock further off than that "
            "(a wrong nominal rate?) leaves the offset right near the middle of the overlap only"
        )
        parts.append(
            (
                carried_ms,
                f"no clock drift within +-{fine.WIDE_DRIFT_PPM:g} ppm held, and a clock further "
                f"off carries it over {carried_ms:.0f} ms to time zero",
            )
        )
    start_shift = oth.start_s * result.drift if drift_ppm else 0.0
    offset_s = shift_s + result.lag / rate - start_shift
    others = [shift_s + lag / rate - start_shift for lag in result.other_source_lags]
    return Result(
        offset_s=float(offset_s),
        drift_ppm=None if drift_ppm is None else float(drift_ppm),
        error_bound_ms=float(bound),
        drift_error_ppm=drift_error,
        overlap_s=float(overlap_s),
        coarse_salience=float(found.salience),
        plot={
            "lags_ms": result.curve_lags_ms,
            "curve": result.curve,
            "view": result.curve_view,
            "block_times_s": result.block_times,
            "block_lags_ms": result.block_lags / rate * 1000,
            "line_ms": (result.lag + result.drift * result.block_times * rate) / rate * 1000,
        },
        notes=notes,
        other_source_offsets_s=others,
        bound_reason=max(parts, key=lambda part: part[0])[1],
        alternatives_ms=list(result.alternatives_ms),
        measured_at_s=float(middle_s + oth.start_s),
        rough_blocks=blocks if rough else None,
    )
