"""Whether one offset and drift hold over the whole recording, stretch by stretch.

A timebase map is one line, t_reference = t_stream * (1 + drift) + offset,
for the whole recording. A recording that lost or gained samples without a
trace in its timestamps (a WAV written by a computer whose audio buffer ran
over, a recorder that dropped a block, a file with a piece cut out) has two
alignments, one before and one after the jump. The whole-overlap search and
the direct-path stage settle on the larger part, with a tight bound, and the
rest is off by the jump in silence: 100 ms lost 20 s into a 60-s camera file
gave an offset right for its last 40 s only, status ok, bound 0.1 ms.

So each stretch of the stream is searched again on its own, a few seconds
either side of where the map puts it, by the whitened correlation at 8 kHz
(`CHECK_RATE`). A stretch whose sound matches the reference clearly somewhere
else, and not nearly as well where the map puts it, is a jump. "Somewhere
else" means beyond how far a sound's alignment moves with where it comes
from in a room (a talker walking from one camera to the other moves it by
the room's size over the speed of sound, tens of milliseconds), so jumps
under `ROOM_S` are not told from that and are not reported. Why 8 kHz:
the rooms' late reflections and the flutter between parallel walls are
strongest at low frequencies, and in a 20-s stretch they can outweigh the
direct sound. At the whole-overlap search's 1 kHz, 5 streams of the
evaluation's first 12 development seeds, at their true offsets, had a
stretch matching 58-72 ms away; at 4 kHz (half the cost), one two-talker
room at RT60 0.8 s of 72 seeds had one matching 95 ms away; at 8 kHz none of
2356 streams did (seeds 1-22, 53-62, 73-82, 93-122, and 1-52 with a close
microphone). A clear match must also beat every other peak of its stretch
by the whole-overlap search's RUNNER_UP_RATIO.

Why each lag is scored against chance (coarse.scores_against_chance), not
against one robust spread for the whole stretch: with a loud cue in the
reference window and noise alone in the stretch (the memory benchmark's
session: a recorder and a camera hearing a short cue a minute under -55
dBFS noise), the lags at which the stretch lies over the cue spread far
wider than the rest. Chance peaks there reached 8-12 robust sd, and one
that stood alone (12.2, 4.95 s away, every other peak under 0.8 of it)
was reported as a jump; against chance it is 3.9. The other way round, the
side lobes of a cue's own match, a thousand robust sd high, cleared the bar
100 ms away in every stretch where the map held, so a real loss of 100 ms
there looked like the sound's own pattern and was not reported; against
chance the match is 25-29 and its side lobes about 1. Speech, heard
throughout, spreads every lag alike, and there the two scales rank peaks
the same way. The check costs about 86 ms of CPU per stream of 30-120 s
(60 ms with one spread per stretch), an eighth of what syncing them takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mdivicom_sync_audio import coarse
from mdivicom_sync_audio.estimate import RUNNER_UP_RATIO, SIGNIFICANCE_MARGIN
from mdivicom_sync_audio.io import Audio

CHECK_RATE = 8000  # Hz, at most: a 16-kHz analysis is decimated to it (see the module docstring)
STRETCH_S = 20.0  # at least; the stretches share the overlap evenly
REACH_S = 5.0  # a jump up to this is looked for; beyond it a stretch is another recording
ROOM_S = 0.05  # a sound's alignment moves this much with its place in a room: not a jump
SAME_JUMP_S = 0.002
MAX_DESCRIBED = 2  # jumps a warning names one by one


@dataclass(frozen=True)
class Jump:
    """A run of stretches of the stream (its own time, s) whose sound matches the
    reference `by_s` later in the reference than the map puts it."""

    from_s: float
    to_s: float
    by_s: float


def _check_rate(audio: Audio) -> tuple[int, int]:
    """The factor the analysis rate is decimated by, and the rate of the check."""
    factor = max(1, audio.rate // CHECK_RATE)
    return factor, audio.rate // factor


def _clear(rate: int) -> float:
    """A score noise alone does not reach over the searched lags, with a margin."""
    return coarse.noise_reach(round(2 * REACH_S * rate) + 1) + SIGNIFICANCE_MARGIN


@dataclass(frozen=True)
class _Stretch:
    at_s: float
    length_s: float
    near: float  # the best score within ROOM_S of where the map puts it
    far: float  # the best score beyond that
    standing: float  # that peak's score, 0 when a peak elsewhere is nearly as high
    by_s: float  # where that is, from the map's place
    pooled: np.ndarray  # every score, the best of each `bin_s` (for the others' peaks)
    bin_s: float

    def best_near(self, by_s: float) -> float:
        """The best score within SAME_JUMP_S of `by_s` from the map's place."""
        low = max(0, int((by_s - SAME_JUMP_S + REACH_S) / self.bin_s))
        high = int((by_s + SAME_JUMP_S + REACH_S) / self.bin_s) + 1
        return float(self.pooled[low:high].max(initial=-np.inf))


def _stretches(ref: Audio, oth: Audio, offset_s: float, drift_ppm: float | None) -> list[_Stretch]:
    """The overlap in stretches of STRETCH_S or a little more, each searched on its own."""
    factor, rate = _check_rate(oth)
    scale = 1 + (drift_ppm or 0.0) * 1e-6
    # the stream's own time (container clock) of its samples' span within the overlap
    start_s = max(oth.start_s, (ref.start_s - offset_s) / scale)
    end_s = min(oth.start_s + oth.duration_s, (ref.start_s + ref.duration_s - offset_s) / scale)
    count = int((end_s - start_s) // STRETCH_S)
    if count < 2:  # one stretch is the whole overlap: nothing to compare it with
        return []
    length_s = (end_s - start_s) / count  # the stretches cover the overlap, end to end
    reach, room, ms = round(REACH_S * rate), round(ROOM_S * rate), max(1, rate // 1000)
    out = []
    for index in range(count):
        at_s = start_s + index * length_s
        first = round((at_s - oth.start_s) * rate) * factor
        piece = coarse.decimate(
            oth.segment(first, first + round(length_s * rate) * factor), oth.rate, rate
        )
        # where the map puts the stretch's start in the reference
        mapped = round((at_s * scale + offset_s - ref.start_s) * rate)
        window = coarse.decimate(
            ref.segment((mapped - reach) * factor, (mapped + len(piece) + reach) * factor),
            ref.rate,
            rate,
        )
        scores = coarse.scores_against_chance(window, piece, reach, reach)
        far = scores.copy()
        far[reach - room : reach + room + 1] = -np.inf
        best = int(np.argmax(far))
        # like the whole-overlap search's, a clear match also beats the best peak
        # elsewhere (beyond +-ROOM_S of it and of the map's place) by the same ratio
        elsewhere = far.copy()
        elsewhere[max(0, best - room) : best + room + 1] = -np.inf
        second = float(elsewhere.max())
        standing = float(far[best]) if second < RUNNER_UP_RATIO * far[best] else 0.0
        pooled = scores[: len(scores) // ms * ms].reshape(-1, ms).max(axis=1)
        out.append(
            _Stretch(
                at_s=at_s,
                length_s=length_s,
                near=float(scores[reach - room : reach + room + 1].max()),
                far=float(far[best]),
                standing=standing,
                by_s=(best - reach) / rate,
                pooled=pooled.astype(np.float32),
                bin_s=ms / rate,
            )
        )
    return out


def find_jumps(ref: Audio, oth: Audio, offset_s: float, drift_ppm: float | None) -> list[Jump]:
    """The stretches of `oth` that the map does not hold on.

    A jump is between stretches the map holds on and stretches it does not, so
    both kinds must be there: where the map holds on none, the offset itself is
    in question, which its error bound answers. And the other place must be the
    jump's own: some stretch the map holds on must have no clear peak there. A
    room's late echo or a repeated sound makes that peak in every stretch (one
    room of the evaluation, at its true offset, had a stretch matching 66 ms
    away, 0.74 as well at the map's place, and the same peak, clear, 0.77 as
    high as the map's, in its other stretch, where the map held); a jump leaves
    it empty on the far side, though a stretch the jump falls inside has both.
    """
    stretches = _stretches(ref, oth, offset_s, drift_ppm)
    clear = _clear(_check_rate(oth)[1])
    holding = [st for st in stretches if st.near >= clear and st.near >= st.far]
    if not holding:
        return []
    found: list[Jump] = []
    for st in stretches:
        if st.standing < clear or st.near >= RUNNER_UP_RATIO * st.far:
            continue
        if all(other.best_near(st.by_s) >= clear for other in holding):
            continue  # the room's or the sound's: there where the map holds too
        last = found[-1] if found else None
        if last and abs(last.by_s - st.by_s) <= SAME_JUMP_S and abs(last.to_s - st.at_s) < 1e-6:
            found[-1] = Jump(last.from_s, st.at_s + st.length_s, last.by_s)
        else:
            found.append(Jump(st.at_s, st.at_s + st.length_s, st.by_s))
    return found


Map = tuple[float, float | None]  # offset_s, drift_ppm: t_reference from t_stream


def _span(audio: Audio, found: Map) -> tuple[float, float]:
    scale = 1 + (found[1] or 0.0) * 1e-6
    start = audio.start_s * scale + found[0]
    return start, start + audio.duration_s * scale


def common_s(a: Audio, a_map: Map, b: Audio, b_map: Map) -> float:
    """How long two recordings overlap on the reference's clock (negative: apart)."""
    (a0, a1), (b0, b1) = _span(a, a_map), _span(b, b_map)
    return min(a1, b1) - max(a0, b0)


def counterpart(node: str, audio: dict[str, Audio], maps: dict[str, Map], reference: str) -> str:
    """What to check `node` against: the reference, unless they share too little
    time for two stretches and another recording shares more (a camera's later
    chapter files meet the reference's first chapter briefly or not at all; they
    would go unchecked). `maps` places each recording on the reference's clock."""
    common = {
        other: common_s(audio[node], maps[node], audio[other], maps[other])
        for other in maps
        if other != node
    }
    if common[reference] >= 2 * STRETCH_S:
        return reference
    return max(common, key=lambda other: (common[other], other == reference))


def relative(of: Map, to: Map) -> Map:
    """`of`'s map onto the recording `to` maps: t_to from t_of."""
    if to == (0.0, None):  # the reference itself: `of` exactly
        return of
    of_scale, to_scale = 1 + (of[1] or 0.0) * 1e-6, 1 + (to[1] or 0.0) * 1e-6
    drift = None if of[1] is None and to[1] is None else (of_scale / to_scale - 1) * 1e6
    return (of[0] - to[0]) / to_scale, drift


def describe(stream_id: str, jumps: list[Jump], against: str = "the reference") -> str:
    """One warning for a stream's jumps: what was seen, and what it means.

    A clock drift beyond the search makes every stretch match elsewhere, each
    by a little more: one line says so instead of one line per stretch.
    """
    where = [
        f"from {jump.from_s:.0f} to {jump.to_s:.0f} s of its recording the sound matches "
        f"{against} {jump.by_s * 1000:+.0f} ms from this offset"
        for jump in jumps[:MAX_DESCRIBED]
    ]
    if len(jumps) > MAX_DESCRIBED:
        where.append(f"{len(jumps) - MAX_DESCRIBED} more stretches up to {jumps[-1].to_s:.0f} s")
    ends = "one end of that stretch" if len(jumps) == 1 else "the ends of those stretches"
    return (
        f"{stream_id}: {'; '.join(where)}: samples were lost or added near {ends} (in this "
        f"recording or {against}), or its clock drifts more than was measured, and the "
        "offset does not hold there"
    )
