"""Every stream against every other, then the most trustworthy chain to the reference.

A camera far from the talker may see the direct sound barely above the room's
echoes against the reference, yet clearly against a camera between them. Each
pair's error bound is known, so each stream takes the chain of pairs from the
reference whose bounds add up to the least (a shortest path; with 2-4 cameras
that is at most 6 pairs). Offsets and drifts compose exactly along the chain;
the bounds add, which keeps them conservative. A pair can still be confidently
wrong (a far camera whose strong reflection wins every test), so every other
route to the stream is compared with the chosen one, and a disagreement
beyond the chosen bound widens it.

The drift takes its own chain: the one whose pairs measured their drifts best
(least summed drift error). A pair can pin the offset well and the drift badly
(few onsets at one end); on held-out rooms such pairs, on the offset's chain,
put drifts 12-42 ppm off. The stream keeps the offset chain's reference time
at its middle, where offsets are measured, and follows the better drift from there.
A pair can also pin a drift far off and be sure of it, so the other routes'
drifts are compared too: one that disagrees beyond both errors widens the
drift's error to cover it (_drift_spread_ppm).

Bounds cannot tell a camera's direct sound from its own strong reflection: a
pair that picks the reflection is as sure of itself, and the loops still close
(the reflection sits at the same delay in every pair with that camera). What
tells them apart is that the reflection comes later; so when the direct pair
puts a stream's sound earlier than the chosen chain does, by a reflection's
delay, and every pair with that stream has a peak there, the direct pair wins.
For the same reason routes that agree prove less than their tight bounds say:
all of them can sit on the stream's reflection. So a doubt of any pair with
the stream (the direct pair, or one with another camera) that puts the
stream's sound earlier stays in the bound, unless some pair with the stream
has no peak where it would put it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from mdivicom_sync_audio import delays, fine
from mdivicom_sync_audio.continuity import common_s
from mdivicom_sync_audio.estimate import Result, SyncProblem, align
from mdivicom_sync_audio.io import Audio

CLOSURE_RATIO = 0.2  # a peak, not the floor between peaks, of a correlation
PEAK_WIDTH_MS = 0.2
# two files of split streams placed to share less time are not paired: over a few
# seconds a chance peak of reused speech stands out as well as the true one (0.7 s
# in common gave one of 8.1 sd, 6.4 s off, that disputed a right answer)
MIN_SHARED_S = 10.0
PLACED_MS = 25.0  # a pair this sure of itself places a recording (to within a second)
HEARD_MS = 1.0  # the sound places a file this well where it overrules a cut
# a route through a cut between a camera's files costs this much more than its bound:
# the sound, where it places a file well, outranks the assumption that files continue
SEAM_COST_MS = HEARD_MS
CUT_SLACK_MS = 1.0  # two places of a file this close agree (beyond both bounds)
DRIFT_FLOOR_PPM = 1.0  # a measured drift, carried across a cut, is good to no better
LOSSLESS = ("flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd")
FRAME_SAMPLES = 1152  # the longest frame of the common lossy codecs (MP3; AAC's is 1024)


@dataclass(frozen=True)
class Link:
    """t_a = t_b * (1 + drift) + offset_s, good to bound_ms."""

    offset_s: float
    drift: float
    bound_ms: float
    drift_error_ppm: float | None
    has_drift: bool
    # without a drift: t_b where the offset was measured (it holds best there)
    at_s: float | None = None
    # the cuts between a camera's files (earlier, later) this link takes to be seamless
    cuts: tuple[tuple[str, str], ...] = ()


def _link(result: Result) -> Link:
    has_drift = result.drift_ppm is not None
    return Link(
        offset_s=result.offset_s,
        drift=(result.drift_ppm or 0.0) * 1e-6,
        bound_ms=result.error_bound_ms,
        drift_error_ppm=result.drift_error_ppm,
        has_drift=has_drift,
        at_s=None if has_drift else result.measured_at_s,
    )


def _reverse(link: Link) -> Link:
    return replace(
        link,
        offset_s=-link.offset_s / (1 + link.drift),
        drift=1 / (1 + link.drift) - 1,
        at_s=None if link.at_s is None else _at(link, link.at_s),
    )


def _chain(first: Link, second: Link) -> Link:
    """first: t_a from t_b; second: t_b from t_c; result: t_a from t_c."""
    errors = [e for e in (first.drift_error_ppm, second.drift_error_ppm) if e is not None]
    has_drift = first.has_drift and second.has_drift
    at_s = second.at_s  # t_c
    if at_s is None and first.at_s is not None:
        at_s = (first.at_s - second.offset_s) / (1 + second.drift)
    return Link(
        offset_s=second.offset_s * (1 + first.drift) + first.offset_s,
        drift=(1 + first.drift) * (1 + second.drift) - 1,
        bound_ms=first.bound_ms + second.bound_ms + _across_cut_ms(first, second),
        # a chain with a pair that measured no drift has no drift, nor an error for it
        drift_error_ppm=sum(errors) if errors and has_drift else None,
        has_drift=has_drift,
        at_s=at_s,
        cuts=first.cuts + second.cuts,
    )


def _across_cut_ms(first: Link, second: Link) -> float:
    """How far `first`'s drift error carries a place across a cut (`second`, a seam):
    the file after it is a file's length away from where `first` was measured, and
    a drift 0.5 ppm off put the 14th 2-minute chapter 0.33 ms off. Without a drift,
    anything within the drift search; on the reference's own clock (no error), none.
    A measured drift's error is taken as at least DRIFT_FLOOR_PPM: claims of 0.16
    ppm were 0.6 ppm off on long rooms."""
    if not second.cuts:
        return 0.0
    if not first.has_drift:
        ppm = fine.WIDE_DRIFT_PPM
    elif first.drift_error_ppm:
        ppm = max(first.drift_error_ppm, DRIFT_FLOOR_PPM)
    else:
        ppm = 0.0
    return abs(second.offset_s) * ppm * 1e-3


def _at(link: Link, time_s: float) -> float:
    return time_s * (1 + link.drift) + link.offset_s


def _support(result: Result, shift_ms: float) -> float:
    """The pair's correlation `shift_ms` away from its chosen peak, against its top."""
    lags = np.asarray(result.plot.get("lags_ms", ()))
    values = np.asarray(result.plot.get("curve", ()))
    near = np.abs(lags - shift_ms) <= PEAK_WIDTH_MS
    if not near.any() or values.max() <= 0:
        return 0.0
    return float(values[near].max() / values.max())


def _support_within(result: Result, shift_ms: float) -> float | None:
    """`_support`, or None beyond the stretch of correlation the pair kept."""
    lags = np.asarray(result.plot.get("lags_ms", ()))
    if not (lags.size > 0 and lags.min() <= shift_ms <= lags.max()):
        return None
    return _support(result, shift_ms)


@dataclass(frozen=True)
class _Network:
    """The pairs, their links both ways, and each stream's chain so far: what the
    checks on one stream's answer look at (`best` and `route` change as they run)."""

    reference: str
    pairs: dict[tuple[str, str], Result]
    links: dict[str, dict[str, Link]]
    best: dict[str, Link]
    route: dict[str, list[str]]


def _cross_pairs(net: _Network, sid: str) -> Iterator[tuple[str, Result, int]]:
    """The stream's pairs with cameras other than the reference: the other camera,
    the pair's result, and the sign that turns the pair's t_first - t_second
    into t_other - t_sid."""
    for (first, second), result in net.pairs.items():
        if sid in (first, second) and net.reference not in (first, second):
            yield (first, result, 1) if second == sid else (second, result, -1)


def _peaks_where(net: _Network, sid: str, ref_time: float, time_s: float) -> list[float | None]:
    """Each pair of the stream with another camera, at the place where the stream
    would be if its time `time_s` were the reference's `ref_time`: the pair's
    correlation there against its top (None when that cannot be told: the other
    camera's own solution goes through this stream, or the place is beyond the
    stretch of correlation the pair kept).

    A stream's own reflection arrives at the same delay in every pair with that
    stream, so an alignment of the stream is only ruled out by a pair that has
    no peak where it would put the pair's two recordings.
    """
    found: list[float | None] = []
    for other, result, sign in _cross_pairs(net, sid):
        if other not in net.best or sid in net.route[other]:
            found.append(None)
            continue
        # where the other camera's clock is when the stream's is at time_s, per this
        # alignment and the other's own solution, against what this pair measured
        solved = net.best[other]
        implied = (ref_time - solved.offset_s) / (1 + solved.drift)
        measured = _at(net.links[other][sid], time_s)
        found.append(_support_within(result, sign * (implied - measured) * 1000))
    return found


def _direct_came_first(net: _Network, sid: str, time_s: float) -> bool:
    """Whether the direct pair, not the chain the bounds chose, has the stream's direct sound.

    A camera's own reflection arrives after its direct sound, at the same delay
    in every pair it is in, so a pair that picks it (often the stronger peak)
    still closes the loops with the others: closure alone cannot tell the two
    apart. Precedence can: when the direct pair puts the stream's sound earlier
    (by a reflection's delay) than the chain does, and every other pair with
    this stream has a peak where that earlier alignment puts it, the chain's
    answer is explained as the stream's reflection and the direct pair's is not.
    """
    if (net.reference, sid) not in net.pairs:
        return False  # no direct pair (a file of the reference's camera: a cut)
    direct = net.links[net.reference][sid]
    ref_time = _at(direct, time_s)
    ahead_ms = (ref_time - _at(net.best[sid], time_s)) * 1000
    if not fine.ECHO_MIN_S * 1000 <= ahead_ms <= fine.ECHO_MAX_S * 1000:
        return False
    peaks = _peaks_where(net, sid, ref_time, time_s)
    return all(peak is not None and peak >= CLOSURE_RATIO for peak in peaks)


def _earlier_places(net: _Network, sid: str, time_s: float) -> list[tuple[float, str]]:
    """The reference's time (ms) at the stream's `time_s` by each alternative that
    a pair with the stream kept in its bound, and the pair: the direct pair's, and
    those of the pairs with another camera, through that camera's own solution."""
    places = []
    direct = net.pairs.get((net.reference, sid))
    if direct is not None:
        at_ms = _at(net.links[net.reference][sid], time_s) * 1000
        places += [(at_ms + a, "the direct pair") for a in direct.alternatives_ms]
    for other, result, sign in _cross_pairs(net, sid):
        if other not in net.best or sid in net.route[other]:
            continue
        # the stream's sound earlier is a larger t_other - t_sid
        at_ms = _at(net.best[other], _at(net.links[other][sid], time_s)) * 1000
        places += [
            (at_ms + sign * alternative, f"the pair with {other}")
            for alternative in result.alternatives_ms
        ]
    return places


def _earlier_not_ruled_out(
    net: _Network, sid: str, chosen: Link, time_s: float
) -> tuple[float, str]:
    """How much earlier than `chosen` (ms) the stream's sound could be, by the
    alternatives of the pairs with the stream that no pair with it rules out (0:
    none), and which pair kept the farthest.

    The stream's own reflection is at the same delay in every pair with the
    stream, so all of them, and every route through them, can agree on it and
    be sure of it; a pair that doubted its answer is then the only sign. A
    reflection comes after the direct sound, so what such an agreement can
    hide is an alignment earlier than the answer; one later is left out. It
    stays in the bound unless some pair with the stream has no peak where it
    would put the pair's recordings. Three streams of the evaluation were 2.8-
    3.6 ms off with bounds of 0.2-0.6 ms this way, while a pair with the stream
    had kept the truth as an alternative.
    """
    chosen_ms = _at(chosen, time_s) * 1000
    direct = net.pairs.get((net.reference, sid))
    direct_ms = _at(net.links[net.reference][sid], time_s) * 1000 if direct is not None else 0.0
    farthest, source = 0.0, ""
    for place_ms, kept_by in _earlier_places(net, sid, time_s):
        earlier_ms = place_ms - chosen_ms  # in t_ref - t_sid: the stream's sound earlier
        if earlier_ms <= max(chosen.bound_ms, farthest):
            continue
        peaks = _peaks_where(net, sid, place_ms / 1000, time_s)
        if direct is not None:
            peaks.append(_support_within(direct, place_ms - direct_ms))
        if not any(peak is not None and peak < CLOSURE_RATIO for peak in peaks):
            farthest, source = earlier_ms, kept_by
    return farthest, source


def _apart_ms(route: Link, chosen: Link) -> float:
    """How far `route` puts the stream's reference time from `chosen` (ms).

    Where both have a drift, at time zero, where the offset is given: a
    disagreement in drift is a disagreement there. A route without one (a
    pair whose clocks are too far apart for the drift search, or too short)
    measured its offset around the middle of its overlap and carries it to
    time zero at no drift, which the other clocks' drift need not share:
    with cameras 0.1 % fast and 0.1 % slow their pair put the routes 60-360
    ms apart at time zero, each right to 0.02 ms where it was measured. Such
    a route is compared there.
    """
    # only a link without a drift has a point (and so does a chain with one)
    at = next((a for a in (route.at_s, chosen.at_s) if a is not None), 0.0)
    return abs(_at(route, at) - _at(chosen, at)) * 1000


def _shortest(
    links: dict[str, dict[str, Link]], reference: str, cost: Callable[[Link], float]
) -> tuple[dict[str, Link], dict[str, list[str]]]:
    """Per stream, the chain from the reference with the least summed `cost`, and its route.

    Dijkstra; with a handful of streams a plain scan for the nearest open node.
    """
    best: dict[str, Link] = {reference: Link(0.0, 0.0, 0.0, None, True)}
    route: dict[str, list[str]] = {reference: [reference]}
    done: set[str] = set()
    while True:
        open_nodes = [n for n in best if n not in done]
        if not open_nodes:
            return best, route
        node = min(open_nodes, key=lambda n: cost(best[n]))
        done.add(node)
        for neighbour, link in links[node].items():
            candidate = _chain(best[node], link)
            if neighbour not in best or cost(candidate) < cost(best[neighbour]):
                best[neighbour] = candidate
                route[neighbour] = [*route[node], neighbour]


def solve(
    audio: dict[str, Audio],
    reference: str,
    usable: list[str],
    max_lag_s: float | None,
    device: dict[str, str] | None = None,
) -> tuple[dict[str, Result | SyncProblem], dict[str, list[str]]]:
    """Per stream: its result against the reference (composed along the best chain,
    or the direct pair's problem) and the chain it took.

    Every pair is aligned, also when the direct pairs look clean: a pair can
    be confidently wrong (a camera whose reflections together outscore its
    direct sound gives a sharp, self-consistent peak and a tight bound), and
    only the other routes to the stream can show it. On a held-out study, two
    such streams were 0.6 and 2.6 ms off with bounds of 0.2 ms until the cross
    pairs were aligned; they widen the bound to cover the disagreement. The
    price is one alignment per pair of cameras instead of one per camera.

    `device` names each stream's recorder when one recorder made several of
    them (a camera's chapter files): its files never overlap in time, so
    they are not paired with each other, and a file is paired with another
    stream's only where their places on the reference's clock could meet (a
    camera's 12-minute chapter and another's from an hour later share no
    sound; their correlation could only find a chance peak). A place comes
    from the first pair sure of itself to within PLACED_MS that joins the
    file to one already placed (_next_pair), and a file's place places the
    rest of its camera's files end to end (seams): cameras of one make
    started together cut their chapters at nearly the same moments, so a
    later chapter often shares no sound with any placed file, and its
    pairs with the first chapters found only chance peaks (on rooms of
    reused speech, 7-10 sd, placing files 16-1763 s off).
    """
    device = device or {}
    wanted = [(reference, sid) for sid in usable if sid != reference]
    wanted += [
        (first, second)
        for index, first in enumerate(usable)
        for second in usable[index + 1 :]
        if reference not in (first, second)
    ]
    wanted = [(a, b) for a, b in wanted if device.get(a, a) != device.get(b, b)]
    pairs: dict[tuple[str, str], Result] = {}
    problems: dict[tuple[str, str], SyncProblem] = {}
    cuts = seams(audio, device, usable)
    # where each recording lies on the reference's clock, once a pair has put it there
    placed: dict[str, Link] = {}
    _place(placed, reference, Link(0.0, 0.0, 0.0, None, True), cuts)
    waiting = list(wanted)
    skipped: list[tuple[str, str]] = []
    while waiting:
        first, second = waiting.pop(_next_pair(waiting, placed, audio))
        split = first in device or second in device
        if split and _little_common_time(placed, audio, first, second):
            skipped.append((first, second))
            continue
        try:
            result = align(audio[first], audio[second], second, max_lag_s)
        except SyncProblem as problem:
            problems[first, second] = problem
            continue
        pairs[first, second] = result
        if result.error_bound_ms <= PLACED_MS:
            link = _link(result)  # t_first from t_second
            if first in placed and second not in placed:
                _place(placed, second, _chain(placed[first], link), cuts)
            elif second in placed and first not in placed:
                _place(placed, first, _chain(placed[second], _reverse(link)), cuts)
    _check_alone(audio, usable, pairs, skipped, max_lag_s)
    # the order the pairs were wanted in, whatever order they were aligned in
    rank = {key: index for index, key in enumerate(wanted)}
    pairs = dict(sorted(pairs.items(), key=lambda item: rank[item[0]]))
    problems = dict(sorted(problems.items(), key=lambda item: rank[item[0]]))
    middles = {sid: audio[sid].duration_s / 2 for sid in usable}
    return combine(pairs, problems, reference, usable, middles, cuts)


def _check_alone(
    audio: dict[str, Audio],
    usable: list[str],
    pairs: dict[tuple[str, str], Result],
    skipped: list[tuple[str, str]],
    max_lag_s: float | None,
) -> None:
    """Give the sound a say on files that no pair reached: their places came from
    seams alone, which are wrong for separate takes, and most of all for the same
    recording written twice (a proxy, a second card), which a seam puts after the
    first, where nothing else was recorded. Each such file is aligned with the
    recordings its seam place left out, the longest first, until one answer is
    sure of itself (within PLACED_MS): that one is kept, to confirm or overrule
    the seam; an answer less sure is most likely a chance peak and is left out."""
    for node in usable:
        if any(node in pair for pair in pairs):
            continue
        tries = [pair for pair in skipped if node in pair]
        tries.sort(key=lambda pair: -audio[pair[1] if pair[0] == node else pair[0]].duration_s)
        for first, second in tries:
            try:
                result = align(audio[first], audio[second], second, max_lag_s)
            except SyncProblem:
                continue
            if result.error_bound_ms <= PLACED_MS:
                pairs[first, second] = result
                break


def seam_allowance_ms(audio: Audio) -> float:
    """How far a cut before this file can move its sound from the end of the file
    before: nothing for PCM and lossless codecs (every sample is kept); for a
    lossy one, the codec's start delay (a cut in the middle of one encoding
    leaves no priming, yet a file without an edit list is read as if it had
    some: io.py) and a frame (padding the encoder added to the file before)."""
    codec = audio.codec.removesuffix("float").removesuffix("_fixed")
    if codec.startswith("pcm_") or codec in LOSSLESS:
        return 0.0
    samples = delays.START_DELAYS.get(codec, 1024) + FRAME_SAMPLES
    return samples / audio.source_rate * 1000


def seams(
    audio: dict[str, Audio], device: dict[str, str], usable: list[str]
) -> dict[tuple[str, str], Link]:
    """Each camera's consecutive usable files (name order) laid end to end: t_earlier
    from t_later, with no drift between them (one clock) and the cuts' allowance as
    the bound; a silent file between two is stepped over by its length."""
    files: dict[str, list[str]] = {}
    for node in audio:
        if node in device:
            files.setdefault(device[node], []).append(node)
    out: dict[tuple[str, str], Link] = {}
    for chapters in files.values():
        for start, earlier in enumerate(chapters):
            if earlier not in usable:
                continue
            link = Link(0.0, 0.0, 0.0, 0.0, True)
            for before, later in pairwise(chapters[start:]):
                ends = audio[before].end_s  # a chapter copied short still ended there
                link = _chain(
                    link,
                    Link(
                        offset_s=ends - audio[later].start_s,
                        drift=0.0,
                        bound_ms=seam_allowance_ms(audio[later]),
                        drift_error_ppm=0.0,
                        has_drift=True,
                        cuts=((before, later),),
                    ),
                )
                if later in usable:
                    out[earlier, later] = link
                    break
    return out


def _place(
    placed: dict[str, Link], node: str, link: Link, cuts: dict[tuple[str, str], Link]
) -> None:
    """Put a recording on the reference's clock, and its camera's other files end to end
    with it (a provisional place: it decides which pairs are aligned, not the answer)."""
    todo = [(node, link)]
    while todo:
        here, where = todo.pop()
        if here in placed:
            continue
        placed[here] = where
        for (earlier, later), seam in cuts.items():
            if earlier == here:
                todo.append((later, _chain(where, seam)))
            elif later == here:
                todo.append((earlier, _chain(where, _reverse(seam))))


def _next_pair(
    waiting: list[tuple[str, str]], placed: dict[str, Link], audio: dict[str, Audio]
) -> int:
    """Which pair to align next: one that could place a recording not placed yet,
    with the longest placed recording (the likeliest to share its time), else the
    first. A place can rule out later pairs: a camera's later chapters meet the
    reference's first one only through the other streams, and paired first with
    a long recorder they get places that leave out their pairs with chapters they
    share too little time with."""
    placing = [i for i, (a, b) in enumerate(waiting) if (a in placed) != (b in placed)]
    if not placing:
        return 0

    def reach(index: int) -> tuple[float, int]:
        a, b = waiting[index]
        return audio[a if a in placed else b].duration_s, -index

    return max(placing, key=reach)


def _little_common_time(placed: dict[str, Link], audio: dict[str, Audio], a: str, b: str) -> bool:
    """Whether two recordings placed on the reference's clock share less than
    MIN_SHARED_S: too little sound in common to align them. Not placed: unknown."""
    if a not in placed or b not in placed:
        return False
    maps = [(placed[n].offset_s, placed[n].drift * 1e6) for n in (a, b)]
    return common_s(audio[a], maps[0], audio[b], maps[1]) < MIN_SHARED_S


def combine(
    pairs: dict[tuple[str, str], Result],
    problems: dict[tuple[str, str], SyncProblem],
    reference: str,
    usable: list[str],
    middles_s: dict[str, float],
    cuts: dict[tuple[str, str], Link] | None = None,
) -> tuple[dict[str, Result | SyncProblem], dict[str, list[str]]]:
    """The pairs' results (t_first from t_second) composed into one per stream, as `solve`.

    `middles_s`: a time inside each stream's recording, where routes are compared
    (at time zero, a drift's extrapolation would blur them). `cuts`: a camera's
    consecutive files end to end (`seams`), links too unless the sound puts the
    two files elsewhere; a route through one costs SEAM_COST_MS more.
    """
    links: dict[str, dict[str, Link]] = {sid: {} for sid in usable}
    for (first, second), result in pairs.items():
        links[first][second] = _link(result)  # t_first from t_second
        links[second][first] = _reverse(_link(result))
    kept, broken = _seams_kept(links, reference, cuts or {}, middles_s)
    for (earlier, later), seam in kept.items():
        links[earlier][later] = seam
        links[later][earlier] = _reverse(seam)
    best, route = _shortest(
        links, reference, lambda link: link.bound_ms + SEAM_COST_MS * len(link.cuts)
    )
    net = _Network(reference, pairs, links, best, route)
    for sid in usable:
        if sid in best and len(route[sid]) > 2 and _direct_came_first(net, sid, middles_s[sid]):
            best[sid], route[sid] = links[reference][sid], [reference, sid]
            # the streams reached through this one follow it
            for node, path in list(route.items()):
                if sid in path[:-1]:
                    rest = path[path.index(sid) :]
                    link = best[sid]
                    for before, after in pairwise(rest):
                        link = _chain(link, links[before][after])
                    best[node], route[node] = link, [reference, *rest]
    # the drift takes its own route: the chain whose drifts are best measured
    # (a pair can pin the offset well and the drift badly, or the other way round)
    measured = {
        node: {n: link for n, link in near.items() if link.drift_error_ppm is not None}
        for node, near in links.items()
    }
    drifts, drift_routes = _shortest(measured, reference, lambda link: link.drift_error_ppm or 0.0)
    out: dict[str, Result | SyncProblem] = {}
    for sid in usable:
        if sid == reference:
            continue
        key = (reference, sid)
        direct = pairs.get(key)
        if sid not in best:
            out[sid] = problems.get(key) or SyncProblem(
                f"{sid}: no chain of matches to {reference}"
            )
            continue
        chosen = best[sid]
        # every other way to reach the stream (the direct pair, or one stream
        # between) is an independent measurement: where one disagrees with the
        # chosen chain, the truth could be on its side, so the bound covers it
        # (a cut is an assumption with a bound of its own, the cut's allowance: only
        # the file across it is disputed through it, and only beyond both bounds)
        heard = [r for r in _routes_to(links, reference, sid) if not r.cuts]
        across = [
            r for r in _across_cuts(net, sid) if _apart_ms(r, chosen) > r.bound_ms + chosen.bound_ms
        ]
        spread_ms = max([_apart_ms(r, chosen) for r in heard + across] + [0.0])
        seam_reason = _seam_reason(chosen) if chosen.cuts else ""
        reason = seam_reason or _reason(route[sid], pairs)
        if spread_ms > chosen.bound_ms:
            chosen = replace(chosen, bound_ms=spread_ms + chosen.bound_ms)
            reason = f"another chain of pairs puts it {spread_ms:.2f} ms away"
        earlier_ms, source = _earlier_not_ruled_out(net, sid, chosen, middles_s[sid])
        if earlier_ms:
            chosen = replace(chosen, bound_ms=earlier_ms + chosen.bound_ms)
            reason = (
                f"{source} has a peak {earlier_ms:.2f} ms earlier "
                "that no other pair with this stream rules out"
            )
        if seam_reason and reason != seam_reason:
            reason = f"{reason}; {seam_reason}"  # a widened bound's, and the cut's
        drift_via = route[sid][1:-1] if chosen.has_drift else []
        drift_reason = ""
        # a file whose chain measured no drift (too little time shared) still has its
        # camera's, across a cut: one clock. Its offset holds where it was measured;
        # the drift's error carries that to the middle (a 40-s chapter of a camera
        # 100 ppm fast, measured on 13 s, was 1.3 ms off at its middle without it)
        borrowed = not chosen.has_drift and sid in drifts and bool(drifts[sid].cuts)
        if sid in drifts and (chosen.has_drift or borrowed):
            # the same reference time at the middle of the stream (or where the offset
            # was measured), along the better drift
            drift_via = drift_routes[sid][1:-1]
            anchor = middles_s[sid]
            if borrowed and chosen.at_s is not None:
                anchor = chosen.at_s
            keep = _at(chosen, anchor)
            carried_ppm = max(drifts[sid].drift_error_ppm or 0.0, DRIFT_FLOOR_PPM)
            chosen = replace(
                chosen,
                drift=drifts[sid].drift,
                drift_error_ppm=drifts[sid].drift_error_ppm,
                offset_s=keep - anchor * (1 + drifts[sid].drift),
                has_drift=True,
                bound_ms=chosen.bound_ms
                + (abs(middles_s[sid] - anchor) * carried_ppm * 1e-3 if borrowed else 0.0),
            )
            spread_ppm = _drift_spread_ppm(measured, reference, sid, drifts[sid])
            if spread_ppm > 0 and chosen.drift_error_ppm is not None:
                chosen = replace(chosen, drift_error_ppm=spread_ppm + chosen.drift_error_ppm)
                drift_reason = f"another chain of pairs measures it {spread_ppm:.1f} ppm away"
        plot = direct.plot if direct is not None else {}
        # a direct pair's doubts do not apply when the chain went around it
        notes = list(direct.notes) if direct is not None and len(route[sid]) == 2 else []
        out[sid] = Result(
            offset_s=chosen.offset_s,
            drift_ppm=chosen.drift * 1e6 if chosen.has_drift else None,
            error_bound_ms=chosen.bound_ms,
            drift_error_ppm=chosen.drift_error_ppm,
            overlap_s=direct.overlap_s if direct is not None else 0.0,
            coarse_salience=direct.coarse_salience if direct is not None else 0.0,
            plot=plot,
            notes=notes,
            other_source_offsets_s=(
                list(direct.other_source_offsets_s)
                if direct is not None and len(route[sid]) == 2
                else []
            ),
            drift_via=drift_via,
            bound_reason=reason,
            drift_reason=drift_reason,
            end_to_end=[later for _, later in chosen.cuts],
            not_continuing={
                earlier: apart for (earlier, later), apart in broken.items() if later == sid
            },
            rough_blocks=_rough_blocks(route[sid], pairs),
        )
    return out, route


def _rough_blocks(path: list[str], pairs: dict[tuple[str, str], Result]) -> int | None:
    """The fewest usable blocks of a pair along `path` whose bound is a guess (None:
    every pair's was measured; a cut is no pair)."""
    hops = [pairs.get((a, b)) or pairs.get((b, a)) for a, b in pairwise(path)]
    rough = [hop.rough_blocks for hop in hops if hop is not None and hop.rough_blocks is not None]
    return min(rough, default=None)


def _seams_kept(
    links: dict[str, dict[str, Link]],
    reference: str,
    cuts: dict[tuple[str, str], Link],
    middles_s: dict[str, float],
) -> tuple[dict[tuple[str, str], Link], dict[tuple[str, str], float]]:
    """The cuts the sound does not contradict, and those it does with how far apart
    (ms) it puts the files: where the sound places both files to within HEARD_MS,
    and they are further apart than both bounds and the cut's allowance (separate
    takes, with a pause between), the files do not continue each other and their
    places come from the sound alone. A looser answer does not overrule a cut: on
    10-s chapter files, answers with bounds of 3.5 ms were 7 ms off, and one of
    23 ms was a chance peak 88 s away."""
    heard, _ = _shortest(links, reference, lambda link: link.bound_ms)
    kept = {}
    broken = {}
    for (earlier, later), seam in cuts.items():
        before, after = heard.get(earlier), heard.get(later)
        if before and after and max(before.bound_ms, after.bound_ms) <= HEARD_MS:
            continued = _chain(before, seam)
            # compared at the later file's middle, or where its offset was measured
            # when it has no drift (it holds only there)
            at = middles_s[later] if after.has_drift or after.at_s is None else after.at_s
            apart_ms = abs(_at(continued, at) - _at(after, at)) * 1000
            if apart_ms > continued.bound_ms + after.bound_ms + CUT_SLACK_MS:
                broken[earlier, later] = apart_ms
                continue
        kept[earlier, later] = seam
    return kept, broken


def _seam_reason(chosen: Link) -> str:
    """Why a file placed through a cut is doubtful: the place assumes no gap there."""
    earlier, later = chosen.cuts[0]
    more = f" and {len(chosen.cuts) - 1} more cut(s)" if len(chosen.cuts) > 1 else ""
    return (
        f"placed end to end with {earlier} -> {later}{more}: no recording that shares "
        "its sound reaches the reference's, so it holds only if the files are one "
        "recording cut in parts (a camera's chapters), not separate takes"
    )


def _drift_spread_ppm(
    measured: dict[str, dict[str, Link]], reference: str, sid: str, chosen: Link
) -> float:
    """How far the other routes with a measured drift (the direct pair, or one
    stream between) that disagree with `chosen` put the stream's drift, at most
    (ppm; 0 when none disagrees).

    The drift's chain is the one whose pairs report the least error, but a
    pair can pin a drift far off and be sure of it (a 300-s room with a camera
    at -999 ppm: -109.8 +- 2.5 ppm against the reference, while the chain
    through the other camera said -999.1 +- 1.6). Two measurements disagree
    when they are further apart than both errors together (a route measured
    poorly, 87.5 +- 15 ppm against 100.5 +- 3, does not dispute it); then, as
    with the offset's bound, the drift's error covers the other: the truth
    may lie with it.
    """
    mine = chosen.drift_error_ppm or 0.0
    apart = [
        (abs(route.drift - chosen.drift) * 1e6, route.drift_error_ppm or 0.0)
        for route in _routes_to(measured, reference, sid)
    ]
    return max((ppm for ppm, theirs in apart if ppm > theirs + mine), default=0.0)


def _across_cuts(net: _Network, sid: str) -> list[Link]:
    """The places the file's neighbours in its camera give it across their cuts (each
    neighbour's own place, not reached through this file): a short chapter's sound
    can find a chance peak, 88 s off with a bound of 23 ms, that only its camera's
    other files dispute."""
    return [
        _chain(net.best[other], link)
        for other, near in net.links.items()
        if (link := near.get(sid)) is not None and link.cuts
        if other in net.best and sid not in net.route[other]
    ]


def _routes_to(links: dict[str, dict[str, Link]], reference: str, sid: str) -> list[Link]:
    """The direct link from the reference to `sid` and every chain with one stream
    between: the independent measurements the chosen chain is checked against."""
    near = links[reference]
    direct = [near[sid]] if sid in near else []
    return direct + [
        _chain(near[middle], links[middle][sid])
        for middle in near
        if middle != sid and sid in links[middle]
    ]


def _reason(path: list[str], pairs: dict[tuple[str, str], Result]) -> str:
    """What widens a chain's bound most: the reason of its loosest pair."""
    hops = [pairs.get((a, b)) or pairs.get((b, a)) for a, b in pairwise(path)]
    loosest = max((hop for hop in hops if hop is not None), key=lambda hop: hop.error_bound_ms)
    if len(path) == 2:
        return loosest.bound_reason
    return f"through {', '.join(path[1:-1])}: {loosest.bound_reason}"
