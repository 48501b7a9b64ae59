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
combined correlation then uses all the recording's onsets at once. A best drift
at the edge of its grid is not a located peak (the drift lies beyond the
grid) and does not count as found. The search starts on the middle 30 s and
narrows around what each span found; a drift that scored nearly as well (80 %)
stays in play and is searched again on the next, longer span, which decides.
Without that, a weak middle span (a held-out two-talker room) pinned a drift
185 ppm off that the narrowed search could not leave.

Why frames are moved along the drift, and a wider look: a drift moves the
lag inside each block too (0.4 ms over a 4-s block at 100 ppm, 4 ms at the
0.1 % of video conformed to 29.97 fps); frames summed at one lag cancel in
every band whose period is shorter than that, and the high bands are the
ones that time the direct sound. So each frame is moved along the drift
found so far before its block is summed (collect_blocks), and each drift
still in play is scored on blocks taken along its own line (frames aligned
on one drift would favour it). The first span is also searched up to
+-WIDE_DRIFT_PPM (_far_drift: 30 s show 250 ppm as 7.5 ms across the span);
a far drift (the wide search's best or a rival, or the drift of the line the
recording's pieces agree on) counts only when the span's blocks, taken again
along it, peak CONFIRM_RATIO times higher than the best on the smeared ones.
When the wide look peaks at its limit instead, no span's drift is taken at
all: on blocks smeared by a clock beyond it, a drift within the usual range
can stand out of its grid (a 1250-ppm clock analysed at 16 kHz: 216 ppm on
the first span, 212 ppm on the whole, given as the drift with the offset
161 ms off at time zero).

Why sources: with two talkers at different places each has its own
direct-path alignment and its own echoes; summed, the two sets of peaks
interleave and an echo of one talker can outscore both direct peaks. Blocks
are split by the shape of their correlation (_sources); when the two groups
differ, each is analysed on its own and the alignment of the group heard most
is the answer (the other is kept in `other_source_lags`).

Why the checks at the end: the same choice made on every other block, the
merit of the runner-up peaks, any peak nearly as high as the chosen one
within an early reflection's reach, and the direct-path peak near every
other strong whole-overlap match (the 1 kHz search can land on a late echo
out of this stage's reach; a match far stronger there moves the search) give
the alternatives the evidence does not rule out: `rival_distance_ms`, the
farthest of them, is what the error bound is built on.

Why the evidence is whitened a second time before the direct path is chosen:
each frame's cross-spectrum is whitened, but their weighted sum is not flat:
speech and its onsets sit below 1 kHz, so there the sum is 2-3 times its mean
and at 2-4 kHz a quarter of it (median over the evaluation's camera pairs).
Low bands alone cannot resolve arrivals a few milliseconds apart: their broad
lobe merges the direct-direct peak with its reflections' and often leans to a
reflection. Whitening the sum (the classic GCC-PHAT of the averaged
cross-spectrum) gives every band one vote, and the high bands' fine timing
decides. The far-match checks keep the band weights: there the question is how
much evidence there is for a match, not where exactly it sits.

Why three views of the early reflections: a floor or table reflection 1-6 ms
after the direct sound shapes both a recording's level across frequency (a
comb) and the phase of the cross-spectrum, and in the whitened correlation it
becomes a peak next to the direct-direct one that can outscore it. When a
recording's early response is minimum-phase (its direct sound the strongest
arrival), that phase follows from the level alone: the folded cepstrum of the
log level gives it (the Hilbert relation). The two recordings' level
difference is measured (the talker's spectrum cancels in it), so the phase of
their early reflections can be taken out of the cross-spectrum, leaving the
direct-direct alignment. Real responses are minimum-phase only in part, and on
the evaluation's development rooms the corrected curve alone was right as
often as the plain one, but on other streams. So `_choose` looks three ways:
the plain curve and the curve corrected for reflections up to 8 ms and up to
25 ms; the middle of the three lags is the answer and a view that chose
elsewhere is a rival with no merit behind, which the error bound covers.

Why a one-sided test after the views: with a close microphone in the pair
(one recording nearly dry) the correlation is the other recording's own room
response, all of its reflections on one side of the direct peak and nothing
but noise on the other. There the views, built for two reverberant
recordings, can settle on a reflection that outweighs the direct sound, while
the outermost strong peak on the busy side is the direct one (_one_sided).
When at least two peaks are strong and exactly one side is quiet, that peak
is the answer, and the views' choices stay alternatives for the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mdivicom_sync_audio.frames import BLOCK_S, Analysed
from mdivicom_sync_audio.io import Audio

SEARCH_S = 0.05
OVERSAMPLE = 8
MAX_DRIFT_PPM = 250.0  # the drifts searched on every span
WIDE_DRIFT_PPM = 1200.0  # looked at on the first span; at this limit, none is measured
FIRST_HALF_S = 15.0  # the first span: the middle 30 s of the overlap
MIN_OVERLAP_S = 1.0  # a shorter overlap has no block to align
SOURCE_LIKENESS = 0.65
SAME_SOURCE_S = 0.0003
MERIT_MARGIN = 0.2
MOVE_RATIO = 2.0
FAR_RATIO = 0.4
FAR_REACH_S = 0.02
FAR_SPAN_S = 60.0
DETERMINED_RATIO = 1.5
DRIFT_RIVAL_RATIO = 0.8
DRIFT_RIVAL_GAP = 4  # grid steps (half a sample each over the span): a separate peak
MAX_DRIFT_RIVALS = 2
RETAKE_FRACTION = 0.01  # of a frame: blocks taken this far off the final line are taken again
RETAKE_REACH = 0.25  # of a wide drift: how far an answer from smeared blocks may be off
CONFIRM_RATIO = 1.5  # how much sharper the blocks taken along a wide drift must peak
CANDIDATE_RATIO = 0.5
NEAR_EQUAL_RATIO = 0.7  # a peak this high beside the answer is a doubt whatever its merit
ECHO_MIN_S = 0.0005
ECHO_MAX_S = 0.025
ECHO_WEIGHT = 0.5
EARLY_REACH_S = (0.008, 0.025)  # reflections the minimum-phase views take out
DRY_PEAK_RATIO = 0.4  # of the highest peak: a strong peak, for the one-sided test
DRY_SIDE_RATIO = 0.3  # of the outermost strong peak: the most the quiet side may reach
DRY_VIEW = "one side nearly dry"  # the view named when the one-sided test chose


@dataclass
class Blocks:
    times_s: np.ndarray  # block centres, in the other stream's sample time
    shifts: np.ndarray  # integer lag (samples) each block was taken at
    spectra: np.ndarray  # (blocks, bins) onset-weighted, whitened cross-spectra
    log_ratio: np.ndarray  # (blocks, bins) onset-weighted sums of log|X_ref|^2 - log|X_other|^2
    weights: np.ndarray  # total weight per block
    band_weights: np.ndarray  # (blocks, bins) the onset weights log_ratio was summed with
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
    curve_view: str = "plain"  # which view of the early reflections `curve` is
    peak_height: float = 0.0
    rival_distance_ms: float = 0.0  # how far the answer could be (other half's, close rival's)
    rival_reason: str = ""  # what put the farthest alternative there, for the user
    block_spread_ms: float = 0.0
    source_likeness: float = 1.0  # cosine between the two block groups' shapes (see _sources)
    other_source_lags: list[float] = field(default_factory=list)  # at time zero, like `lag`
    # where each alternative the bound covers would put the answer (ms, signed like lag)
    alternatives_ms: list[float] = field(default_factory=list)
    far_kept: list[float] = field(default_factory=list)  # candidates not ruled out (as given)
    # the first span's wide search peaked at its limit (+-WIDE_DRIFT_PPM): the
    # clocks may differ by more than that, and no drift was pinned
    drift_refuted: bool = False


def collect_blocks(
    ref: Analysed, oth: Analysed, lag_at: np.ndarray, times: np.ndarray, drift: float = 0.0
) -> Blocks:
    """Onset-weighted cross-spectra of blocks starting at `times` (other's samples).

    The reference's frames of a block are cut at one shift, but with a clock
    drift the lag moves inside the block (4 ms over a 4-s block at 1000 ppm):
    summed as they are, the frames' peaks smear and the high bands, which time
    the direct sound, cancel. Each frame's cross-spectrum is therefore moved
    to the block centre's lag along `drift` before the frames are summed.
    """
    rate, frame, hop, block = ref.rate, ref.frame, ref.hop, ref.block
    bins = np.arange(frame + 1)
    ramps: np.ndarray | None = None  # the frames' phase ramps: the same for every block
    spectra, weights, centres, shifts = [], [], [], []
    ratios, bands = [], []
    for start, lag in zip(times, lag_at, strict=True):
        shift = round(lag)
        other, mine = oth.stretch(int(start)), ref.stretch(int(start) + shift)
        w = other.onset * mine.onset
        cross = mine.phase * np.conj(other.phase)
        if drift:
            if ramps is None:
                # each frame's lag is ahead of the block centre's by drift * (its time
                # from the centre), a step of drift * hop per frame: its phase ramp is
                # the first frame's times the step's, once per frame (no exp per bin)
                skip = ref.lead // hop
                first = drift * (skip * hop + frame / 2 - ref.lead - block / 2)
                steps = np.empty_like(cross)
                steps[0] = np.exp(1j * np.pi * first * bins / frame)
                steps[1:] = np.exp(1j * np.pi * drift * hop * bins / frame)
                ramps = np.cumprod(steps, axis=0)
            cross *= ramps
        spectra.append((w * cross).sum(axis=0))
        weights.append(float(w.sum()))
        ratio = mine.log_power - other.log_power
        ratios.append((w * ratio).sum(axis=0).astype(np.float32))
        bands.append(w.sum(axis=0))
        centres.append((start + block / 2) / rate)
        shifts.append(shift)
    return Blocks(
        times_s=np.array(centres),
        shifts=np.array(shifts, dtype=float),
        spectra=np.array(spectra),
        log_ratio=np.array(ratios),
        weights=np.array(weights),
        band_weights=np.array(bands),
        frame=frame,
        rate=rate,
    )


def _blocks_along(
    ref: Analysed, oth: Analysed, lag_mid: float, drift: float, starts: np.ndarray, mid_s: float
) -> Blocks:
    """Blocks starting at `starts` (other's samples), each taken where the line
    `lag(t) = lag_mid + drift * (t - mid_s)` puts its centre."""
    rate = ref.rate
    centres_s = (starts + ref.block / 2) / rate
    return collect_blocks(ref, oth, lag_mid + drift * (centres_s - mid_s) * rate, starts, drift)


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


def _local_maxima(values: np.ndarray) -> np.ndarray:
    """Where a curve peaks (the first sample of a flat top counts; the ends never do)."""
    return np.r_[False, (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]), False]


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


@dataclass
class Choice:
    """The direct-path peak of one set of blocks, and the peaks that nearly won."""

    lag: float  # samples, relative to the base the curve was taken at
    height: float
    lags: np.ndarray
    values: np.ndarray
    rivals: list[tuple[float, float]]  # (lag, merit behind the winner) of the other candidates
    view: str = "plain"  # the curve the lag was taken on (see _choose)
    # the lags the other views of the early reflections chose, when they differ
    # from this one's: alternatives with no merit behind (see _choose)
    views_elsewhere: list[float] = field(default_factory=list)


def _direct_path(lags: np.ndarray, values: np.ndarray, pattern: np.ndarray, rate: int) -> Choice:
    """Among the strong peaks, the one whose surroundings say "direct sound"."""
    top = float(values.max())
    local = _local_maxima(values)
    candidates = np.flatnonzero(local & (values >= CANDIDATE_RATIO * top))
    if len(candidates) <= 1:
        lag, height = _peak(lags, values)
        return Choice(lag, height, lags, values, [])
    scores = np.array([_echo_score(lags, values, pattern, lags[i], rate) for i in candidates])
    # height and echo test together: the test alone is noisy when reflections are weak
    merit = values[candidates] / top + ECHO_WEIGHT * scores / (np.max(np.abs(scores)) or 1.0)
    winner = int(np.argmax(merit))
    best = candidates[winner]
    lo, hi = max(0, best - 1), min(len(values), best + 2)
    lag, height = _peak(lags[lo:hi], values[lo:hi])
    rivals = [
        (float(lags[c]), float(merit[winner] - m))
        for index, (c, m) in enumerate(zip(candidates, merit, strict=True))
        if index != winner
    ]
    return Choice(lag, height, lags, values, rivals)


def _one_sided(lags: np.ndarray, values: np.ndarray, rate: int) -> int | None:
    """The direct-path peak's index when one recording is nearly dry, else None.

    A microphone close to the talker (a lapel or table microphone) hears
    little of the room, so its correlation with a camera is that camera's own
    room response: the direct sound, then the camera's reflections, all on one
    side of it (earlier lags when the dry one is the reference, later when it
    is the other). The direct peak is then the outermost strong peak, with
    nothing but noise beyond it, however high the reflections behind it add
    up. With two reverberant recordings both sides of the direct peak carry
    reflections, and the test does not apply. On the evaluation's rooms with a
    close reference the highest peak was a reflection's on 30 of 114 streams
    (noise-free responses); the outermost strong peak never was.
    """
    top = int(np.argmax(values))
    reach = ECHO_MAX_S * rate
    strong = np.flatnonzero(
        _local_maxima(values)
        & (values >= DRY_PEAK_RATIO * values[top])
        & (np.abs(lags - lags[top]) <= reach)
    )
    if len(strong) < 2:
        # one strong peak and a weaker one beside it: a dry reference with a louder
        # reflection, or a dry other with a weaker one; the curve cannot tell which
        return None
    quiet = []
    for index, side in ((strong[-1], 1.0), (strong[0], -1.0)):
        beyond = side * (lags - lags[index])
        zone = (beyond > SAME_SOURCE_S * rate) & (beyond <= reach)
        if zone.any() and values[zone].max() < DRY_SIDE_RATIO * values[index]:
            quiet.append(int(index))
    # quiet beyond both outermost peaks: nothing says which recording is the dry one
    return quiet[0] if len(quiet) == 1 else None


def _near_equal(choice: Choice, rate: int) -> list[tuple[float, float]]:
    """(lag, height ratio) of the peaks within an early reflection's reach nearly
    as high as the chosen one.

    The direct-path test weighs height against the order of echoes, and its
    echo evidence fails in a way no consistency check sees: when a recording's
    own reflections arrive together and outweigh its direct sound (a camera
    near a wall and the floor), every pair with that recording, every half of
    the blocks and every view agree on the reflection. What stays visible is a
    second peak nearly as high (not always the direct one: the sign of a
    correlation where the choice can go wrong), so such a peak bounds the
    answer whatever its merit.
    """
    lags, values = choice.lags, choice.values
    local = _local_maxima(values)
    distance = np.abs(lags - choice.lag)
    near = (distance > SAME_SOURCE_S * rate) & (distance <= ECHO_MAX_S * rate)
    strong = values >= NEAR_EQUAL_RATIO * choice.height
    picked = local & near & strong
    return [
        (float(at), float(value / choice.height))
        for at, value in zip(lags[picked], values[picked], strict=True)
    ]


def _aligned(blocks: Blocks, drift: float, base: int, mid_s: float, rate: int) -> np.ndarray:
    """Each block's spectrum re-phased onto the line (not summed: see _sources)."""
    size = 2 * blocks.frame
    bins = np.arange(size // 2 + 1)
    delta = drift * (blocks.times_s - mid_s) * rate - blocks.shifts + base
    return blocks.spectra * np.exp(2j * np.pi * np.outer(delta, bins) / size)


def _block_curves(aligned: np.ndarray, frame: int, rate: int) -> np.ndarray:
    """Each block's correlation within +-SEARCH_S (blocks x lags), a few blocks at a time."""
    reach = int(SEARCH_S * rate)
    out = np.empty((len(aligned), 2 * reach + 1), dtype=np.float32)
    for start in range(0, len(aligned), 128):
        corr = np.fft.irfft(aligned[start : start + 128], 2 * frame, axis=1)
        out[start : start + 128] = np.concatenate([corr[:, -reach:], corr[:, : reach + 1]], axis=1)
    return out


def _sources(curves: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Blocks split in two by the shape of their correlation, and how alike the halves are.

    Each place a sound comes from has its own direct-path alignment and its own
    echo pattern, so the blocks in which one talker speaks share a set of peaks
    and those of another talker share another. Summed, the two sets interleave
    and the direct-path test sees a mixture of two rooms. A two-way split
    (spherical k-means, weighted by onset weight) returns the labels and the
    cosine between the two groups' mean shapes: near 1 for one source (the
    split only divides noise), low for two.
    """
    shape = np.clip(curves.astype(np.float64), 0, None)
    norms = np.linalg.norm(shape, axis=1)
    usable = (weights > 0) & (norms > 0)
    labels: np.ndarray = np.zeros(len(curves), dtype=int)
    if usable.sum() < 4:
        return labels, 1.0
    unit = shape / np.maximum(norms, 1e-30)[:, None]
    mass = np.where(usable, weights, 0.0)
    first = int(np.argmax(mass))
    second = int(np.argmin(np.where(usable, unit @ unit[first], np.inf)))
    centres = unit[[first, second]].copy()
    for _ in range(30):
        new = np.argmax(unit @ centres.T, axis=1)
        for group in (0, 1):
            members = usable & (new == group)
            if members.any():
                centre = (mass[members, None] * unit[members]).sum(axis=0)
                centres[group] = centre / max(float(np.linalg.norm(centre)), 1e-30)
        if np.array_equal(new, labels):
            break
        labels = new
    labels = np.where(usable, labels, -1)
    return labels, float(centres[0] @ centres[1])


@dataclass
class DriftFit:
    """The best drift on a grid, whether it stands out, and the drifts that nearly won."""

    drift: float
    determined: bool
    score: float
    rivals: list[float]  # other local maxima at least DRIFT_RIVAL_RATIO as high
    at_limit: bool = False  # the best is at +-WIDE_DRIFT_PPM: the drift may lie beyond


def _best_drift(blocks: Blocks, centre: float, reach: float, base: int, mid_s: float) -> DriftFit:
    """The drift within centre +- reach whose re-phased blocks give the highest peak.

    The grid is walked with one complex multiply per block and bin per step
    (the phase of each step is the previous one's times a constant), which
    keeps thousands of candidate drifts cheap on long recordings. The drift is
    determined only when the best peak stands out (1.5x the median over the
    grid): one lone clap in the span fits every drift equally well. Other
    peaks of the score nearly as high are returned as rivals: a short span
    cannot rule them out.
    """
    rate = blocks.rate
    step = 0.5 / ((blocks.times_s[-1] - blocks.times_s[0]) * rate)  # half a sample over the span
    limit = WIDE_DRIFT_PPM * 1e-6
    low, high = max(centre - reach, -limit), min(centre + reach, limit)
    grid = np.arange(low, max(high, low) + step / 2, step)
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
    # a maximum at the grid's edge is no located peak: the drift lies beyond the grid
    inside = 0 < best < len(grid) - 1
    at_limit = (best == 0 and low == -limit) or (best == len(grid) - 1 and high == limit)
    top = float(scores[best])
    local = _local_maxima(scores)
    apart = np.abs(np.arange(len(grid)) - best) > DRIFT_RIVAL_GAP
    rivals = np.flatnonzero(local & apart & (scores >= DRIFT_RIVAL_RATIO * top))
    rivals = rivals[np.argsort(scores[rivals])[::-1][:MAX_DRIFT_RIVALS]]
    return DriftFit(
        drift,
        inside and bool(top >= DETERMINED_RATIO * np.median(scores)),
        top,
        [float(grid[index]) for index in rivals],
        at_limit,
    )


def _early_phase(log_gain: np.ndarray, frame: int, reach: int) -> np.ndarray:
    """The phase of the minimum-phase response with this log gain, from delays below `reach`.

    Folding the real cepstrum onto positive quefrencies gives the complex
    cepstrum of the minimum-phase response; keeping only delays shorter than
    `reach` samples keeps the early reflections and drops the reverberant
    tail, whose response is not minimum-phase.
    """
    size = 2 * frame
    cepstrum = np.fft.irfft(log_gain, size)
    folded = np.zeros(size)
    folded[1:reach] = 2 * cepstrum[1:reach]
    return np.imag(np.fft.rfft(folded))


def _choose(
    aligned: np.ndarray, blocks: Blocks, group: np.ndarray, rate: int, whiten: bool = True
) -> Choice:
    """The direct path of the blocks in `group`, with their own echo pattern.

    `whiten`: every band one vote (see the module's notes); False keeps the
    bands' weights, for comparing how strong two matches are.
    """
    spectrum = aligned[group].sum(axis=0)
    if whiten:
        spectrum = spectrum / np.maximum(np.abs(spectrum), 1e-30)
    log_ratio = blocks.log_ratio[group].sum(axis=0)
    ratio = log_ratio / max(float(blocks.weights[group].sum()), 1e-30)
    pattern = np.fft.irfft(ratio, 2 * blocks.frame)
    plain = _direct_path(*_curve(spectrum, blocks.frame, rate), pattern, rate)
    if not whiten:
        return plain
    # per band, the mean log level difference of the two recordings (|H_ref| / |H_other|)
    gain = 0.5 * log_ratio
    gain /= np.maximum(blocks.band_weights[group].sum(axis=0), 1e-30)
    views = [plain]
    for reach_s in EARLY_REACH_S:
        phase = _early_phase(gain, blocks.frame, int(reach_s * rate))
        corrected = spectrum * np.exp(-1j * phase)
        view = _direct_path(*_curve(corrected, blocks.frame, rate), pattern, rate)
        view.view = f"reflections to {reach_s * 1000:g} ms out"
        views.append(view)
    views.sort(key=lambda view: view.lag)
    middle = views[len(views) // 2]
    dry = _one_sided(plain.lags, plain.values, rate)
    if dry is not None and abs(plain.lags[dry] - middle.lag) > SAME_SOURCE_S * rate:
        # one recording nearly dry: its direct peak is the outermost strong one,
        # and the views' choices stay alternatives
        lag, height = _peak(plain.lags[dry - 1 : dry + 2], plain.values[dry - 1 : dry + 2])
        return Choice(
            lag, height, plain.lags, plain.values, [], DRY_VIEW, [view.lag for view in views]
        )
    return replace(middle, views_elsewhere=[view.lag for view in views if view is not middle])


@dataclass
class FarLook:
    """A drift beyond MAX_DRIFT_PPM that the span's sound confirms, or why there is none."""

    fit: DriftFit | None = None
    blocks: Blocks | None = None
    taken_at: float = 0.0
    beyond: bool = False  # the wide search peaked at its limit: the clock may be further off


def _a_sample_apart(first: float, second: float, rate: int) -> bool:
    """Whether frames aligned along drifts `first` and `second` differ by more than
    a sample within a block (else blocks taken along one serve the other as well)."""
    return abs(first - second) * BLOCK_S * rate > 1.0


def _far_drift(
    ref: Analysed,
    oth: Analysed,
    blocks: Blocks,
    usual: DriftFit,
    lag_mid: float,
    starts: np.ndarray,
    mid_s: float,
    offered: tuple[float, ...] = (),
) -> FarLook:
    """The span's drift searched up to +-WIDE_DRIFT_PPM, kept only when confirmed.

    The blocks were taken before any drift was known, so with a large drift
    their frames are smeared and the wide grid, many times the usual one,
    offers noise many more places to peak (a weak two-talker span peaked at
    360 ppm for a -60 ppm clock). Every far drift in play (the wide grid's
    best and its rivals, and `offered`: the line pieces of the recording
    agree on) is therefore taken again, the span's blocks along its own line,
    and kept only if they then peak CONFIRM_RATIO times higher than the best
    on the smeared blocks (the clocks' drift sharpens them: 4 to 24 at 1000
    ppm; that spurious one, 0.12 to 0.15). Smeared, the clocks' drift need
    not be the grid's best: in a room at 8 kHz a camera at 1000 ppm scored
    below 207 ppm, its rival. A retake that moves the drift by more than a
    sample across a block was itself taken along a line still that far off:
    it is taken once more along what it chose (a camera at -999 ppm: -850,
    then -1022 at 0.24, then -998 at 0.40, over the bar of 0.32). That last
    grid is only as wide as the move and all of it near the peak, so whether
    the peak stands out is the first retake's finding (a 300-s room: -1046,
    then -997.9 at 0.672 standing out, then -1000.2 at 0.677 on a +-48.5 ppm
    grid, which alone would not: the drift was dropped and the pair pinned
    -109.8 ppm).
    """
    base = round(lag_mid)
    wide = _best_drift(blocks, 0.0, WIDE_DRIFT_PPM * 1e-6, base, mid_s)
    bar = CONFIRM_RATIO * max(wide.score, usual.score)
    tried: list[float] = []
    best: FarLook | None = None
    beyond = False
    # the grid's best counts only when it beats the usual range's (a far rival or
    # an offered drift is compared with the bar alone)
    first = (wide.drift,) if wide.score > usual.score else ()
    for at in (*first, *wide.rivals, *offered):
        if abs(at) <= MAX_DRIFT_PPM * 1e-6 or any(
            not _a_sample_apart(at, t, ref.rate) for t in tried
        ):
            continue
        tried.append(at)
        along = _blocks_along(ref, oth, lag_mid, at, starts, mid_s)
        again = _best_drift(along, at, RETAKE_REACH * abs(at), base, mid_s)
        if first and at == wide.drift and (again.at_limit or wide.at_limit):
            beyond = True
            continue
        if _a_sample_apart(again.drift, at, ref.rate) and not again.at_limit:
            # the blocks were still smeared along `at`: once more along what they chose
            moved = abs(again.drift - at)
            at = again.drift
            along = _blocks_along(ref, oth, lag_mid, at, starts, mid_s)
            stood_out = again.determined
            again = _best_drift(along, at, moved, base, mid_s)
            # a grid only as wide as the move is all near the peak: whether it stands
            # out was judged on the wider one
            again = replace(again, determined=again.determined or stood_out)
        if again.at_limit or again.score < bar or not again.determined:
            continue
        if best is None or best.fit is None or again.score > best.fit.score:
            best = FarLook(replace(again, determined=True), along, at)
    return best if best is not None else FarLook(beyond=beyond)


def overlap(ref_samples: int, oth_samples: int, lag: float) -> tuple[int, int]:
    """The other's samples [first, last) that the reference's recording covers
    where `lag` (samples) puts them."""
    first = max(0, int(np.ceil(-lag)))
    return first, min(oth_samples, int(ref_samples - lag))


def refine(
    ref: Audio,
    oth: Audio,
    coarse_lag: float,
    estimate_drift: bool,
    candidates: tuple[float, ...] = (),
    offered_drift: float | None = None,
) -> Fine | None:
    """Direct-path lag (and drift) near `coarse_lag` (samples at the analysis rate).

    Long recordings are taken in growing spans around the middle of the overlap
    (30 s, then 4x wider each time), each span's drift narrowing the search of
    the next and placing its blocks where the lag has moved to.
    """
    return _refine(
        Analysed(ref), Analysed(oth), coarse_lag, estimate_drift, candidates, False, offered_drift
    )


def _refine(
    ref: Analysed,
    oth: Analysed,
    coarse_lag: float,
    estimate_drift: bool,
    candidates: tuple[float, ...],
    moved: bool,
    offered_drift: float | None,
) -> Fine | None:
    rate, block = ref.rate, ref.block
    first, last = overlap(len(ref.audio.samples), len(oth.audio.samples), coarse_lag)
    if last - first < MIN_OVERLAP_S * rate:
        return None
    every = np.arange(first, max(first + 1, last - block // 2), block)
    mid_s = (first + last) / 2 / rate
    half_s, drift, reach = FIRST_HALF_S, 0.0, MAX_DRIFT_PPM * 1e-6
    pinned = False
    hypotheses: list[float] = []  # drifts a shorter span could not rule out
    lag_mid = coarse_lag
    beyond = False  # a wide look peaked at its limit (see _far_drift)

    while True:
        centres = (every + block / 2) / rate
        chosen = every[np.abs(centres - mid_s) <= half_s + BLOCK_S / 2]
        if not len(chosen):
            chosen = every
        taken_at = drift
        blocks = _blocks_along(ref, oth, lag_mid, drift, chosen, mid_s)
        base = round(lag_mid)
        span = blocks.times_s[-1] - blocks.times_s[0] if len(chosen) > 1 else 0.0
        # until a span's sound pins the drift down, the search stays wide open
        determined = False
        # a wide look that peaked at its limit leaves no drift to find on later spans
        if estimate_drift and not beyond and span > 0 and blocks.weights.sum() > 0:
            # each drift in play is scored on blocks taken along its own line: frames
            # aligned along one drift would favour it over the others
            takes = [(drift, blocks)] + [
                (at, _blocks_along(ref, oth, lag_mid, at, chosen, mid_s))
                if _a_sample_apart(at, drift, rate)
                else (at, blocks)
                for at in hypotheses
            ]
            fits = [_best_drift(along, at, reach, base, mid_s) for at, along in takes]
            best = int(np.argmax([f.score for f in fits]))
            fit = fits[best]
            taken_at, blocks = takes[best]
            if half_s == FIRST_HALF_S:
                far_look = _far_drift(
                    ref,
                    oth,
                    blocks,
                    fit,
                    lag_mid,
                    chosen,
                    mid_s,
                    () if offered_drift is None else (offered_drift,),
                )
                beyond = far_look.beyond
                if far_look.fit is not None and far_look.blocks is not None:
                    fit, blocks = far_look.fit, far_look.blocks
                    taken_at, fits = far_look.taken_at, [far_look.fit]
            # when the wide look peaked at its limit, the clocks may differ by more: a
            # drift within it that stands out on blocks smeared that much is not taken
            determined = fit.determined and not beyond
            # once pinned, the narrowed grid is all near the peak: its refinement counts
            if determined or pinned:
                drift = fit.drift
                pinned = True
                # a drift nearly as good stays in play until a longer span decides
                apart = DRIFT_RIVAL_GAP * 0.5 / (span * rate)
                hypotheses = [
                    f.drift
                    for f in fits
                    if f.score >= DRIFT_RIVAL_RATIO * fit.score and abs(f.drift - drift) > apart
                ] + fit.rivals
        if (
            len(chosen) == len(every)
            and abs(drift - taken_at) * span / 2 * rate > RETAKE_FRACTION * blocks.frame
        ):
            # the last span switched to another drift: its blocks were taken along the old line
            blocks = _blocks_along(ref, oth, lag_mid, drift, chosen, mid_s)
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
    aligned = _aligned(blocks, drift, base, mid_s, rate)
    labels, likeness = _sources(_block_curves(aligned, blocks.frame, rate), blocks.weights)
    everything = blocks.weights > 0
    groups = [everything]
    if likeness < SOURCE_LIKENESS:
        groups = [labels == 0, labels == 1]
    choices = [_choose(aligned, blocks, group, rate) for group in groups]
    masses = [float(blocks.weights[group].sum()) for group in groups]
    other_lags: list[float] = []
    if len(choices) == 2 and abs(choices[0].lag - choices[1].lag) > SAME_SOURCE_S * rate:
        # two places: the offset is the alignment of the one heard most
        main = int(np.argmax(masses))
        selected, choice = groups[main], choices[main]
        other_lags.append(base + choices[1 - main].lag)
    else:
        # one group is all the blocks: its choice is already made
        whole = choices[0] if len(groups) == 1 else _choose(aligned, blocks, everything, rate)
        selected, choice = everything, whole
    lags, values, lag, height = choice.lags, choice.values, choice.lag, choice.height
    # the same choice made on every other block (two halves of the evidence):
    # when a half picks another peak, the answer could be there
    indices = np.flatnonzero(selected)
    halves = [
        _choose(aligned, blocks, np.isin(np.arange(len(selected)), part), rate)
        for part in (indices[0::2], indices[1::2])
        if len(part)
    ]
    # strong whole-overlap peaks beyond this stage's reach: the direct path could
    # be near one of them, so each is looked at the same way, on the same blocks
    far: list[tuple[float, float]] = []
    kept: list[float] = []
    subset = np.abs(blocks.times_s - mid_s) <= FAR_SPAN_S / 2
    subset &= everything
    if subset.sum() < 2:
        subset = everything
    if (subset & selected).any():
        subset &= selected
    here = _choose(aligned, blocks, subset, rate, whiten=False)
    for candidate in candidates:
        centre = candidate  # an average over the overlap: the lag at its middle, like base
        if abs(centre - (base + lag)) <= FAR_REACH_S * rate:
            continue
        elsewhere = _blocks_along(ref, oth, centre, drift, every[subset], mid_s)
        shifted = _aligned(elsewhere, drift, round(centre), mid_s, rate)
        there = _choose(shifted, elsewhere, elsewhere.weights > 0, rate, whiten=False)
        ratio = there.height / max(here.height, 1e-30)
        if ratio >= MOVE_RATIO and not moved:
            # the whole-overlap search landed on an echo out of reach: start again there
            # (at the peak found there, so the new search is centred on it)
            others = (*(c for c in candidates if c != candidate), coarse_lag)
            at = round(centre) + there.lag
            return _refine(ref, oth, at, estimate_drift, others, True, offered_drift)
        far.append((float((round(centre) + there.lag - base - lag) / rate * 1000), ratio))
        if ratio >= FAR_RATIO:
            kept.append(candidate)
    # each block's own peak near the combined one: their scatter measures the noise
    own, own_times = [], []
    bins = np.arange(blocks.frame + 1)
    for index in np.flatnonzero(selected):
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

    def ms_from_answer(at: float) -> float:
        return float((at - lag) / rate * 1000)

    # each alternative (signed: where it would put the answer) with what a user
    # should be told about it
    doubts = [
        (ms_from_answer(half.lag), "half of the blocks picks a peak {:.2f} ms away")
        for half in halves
    ]
    doubts += [
        (ms_from_answer(at), "a peak {:.2f} ms away nearly passed the direct-path test")
        for at, gap in choice.rivals
        if gap < MERIT_MARGIN
    ]
    view_doubt = (
        "a view of the early reflections picks a peak {:.2f} ms away (the outermost "
        "strong peak was taken: one recording sounds nearly dry)"
        if choice.view == DRY_VIEW
        else "a view with the early reflections taken out picks a peak {:.2f} ms away"
    )
    doubts += [(ms_from_answer(at), view_doubt) for at in choice.views_elsewhere]
    doubts += [
        (distance, "a match {:.2f} ms away is " + f"{ratio:.0%} as strong")
        for distance, ratio in far
        if ratio >= FAR_RATIO
    ]
    doubts += [
        (ms_from_answer(at), "another peak {:.2f} ms away is " + f"{ratio:.0%} as high")
        for at, ratio in _near_equal(choice, rate)
    ]
    counted = [(d, why) for d, why in doubts if abs(d) > SAME_SOURCE_S * 1000]
    farthest, reason = max(counted, default=(0.0, ""), key=lambda doubt: abs(doubt[0]))
    lag_mid = base + lag
    return Fine(
        lag=lag_mid - drift * mid_s * rate,
        drift=drift,
        drift_span_s=float(span),
        drift_pinned=pinned,
        drift_refuted=beyond,
        block_lags=own_arr + base + drift * (np.array(own_times) - mid_s) * rate,
        block_times=np.array(own_times),
        curve_lags_ms=(lags - lag) / rate * 1000,  # 0 at the chosen peak
        curve=values / max(height, 1e-30),
        curve_view=choice.view,
        peak_height=height,
        rival_distance_ms=abs(farthest),
        rival_reason=reason.format(abs(farthest)),
        block_spread_ms=spread,
        source_likeness=likeness,
        other_source_lags=[at - drift * mid_s * rate for at in other_lags],
        alternatives_ms=[d for d, _ in counted],
        far_kept=kept,
    )
