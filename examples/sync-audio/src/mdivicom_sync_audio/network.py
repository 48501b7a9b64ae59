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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mdivicom_sync_audio.estimate import Result, SyncProblem, align
from mdivicom_sync_audio.io import Audio


@dataclass(frozen=True)
class Link:
    """t_a = t_b * (1 + drift) + offset_s, good to bound_ms."""

    offset_s: float
    drift: float
    bound_ms: float
    drift_error_ppm: float | None
    has_drift: bool


def _link(result: Result) -> Link:
    return Link(
        offset_s=result.offset_s,
        drift=(result.drift_ppm or 0.0) * 1e-6,
        bound_ms=result.error_bound_ms,
        drift_error_ppm=result.drift_error_ppm,
        has_drift=result.drift_ppm is not None,
    )


def _reverse(link: Link) -> Link:
    return replace(link, offset_s=-link.offset_s / (1 + link.drift), drift=1 / (1 + link.drift) - 1)


def _chain(first: Link, second: Link) -> Link:
    """first: t_a from t_b; second: t_b from t_c; result: t_a from t_c."""
    errors = [e for e in (first.drift_error_ppm, second.drift_error_ppm) if e is not None]
    return Link(
        offset_s=second.offset_s * (1 + first.drift) + first.offset_s,
        drift=(1 + first.drift) * (1 + second.drift) - 1,
        bound_ms=first.bound_ms + second.bound_ms,
        drift_error_ppm=sum(errors) if errors else None,
        has_drift=first.has_drift and second.has_drift,
    )


def solve(
    audio: dict[str, Audio],
    reference: str,
    usable: list[str],
    max_lag_s: float | None,
    max_error_ms: float,
) -> tuple[dict[str, Result | SyncProblem], dict[str, list[str]]]:
    """Per stream: its result against the reference (composed along the best chain,
    or the direct pair's problem) and the chain it took.

    The pairs without the reference are aligned only when a direct pair failed
    or is doubtful (bound above max_error_ms): a clean session costs no more
    than one alignment per camera.
    """
    pairs: dict[tuple[str, str], Result] = {}
    problems: dict[tuple[str, str], SyncProblem] = {}
    wanted = [(reference, sid) for sid in usable if sid != reference]
    wanted += [
        (first, second)
        for index, first in enumerate(usable)
        for second in usable[index + 1 :]
        if reference not in (first, second)
    ]
    for index, (first, second) in enumerate(wanted):
        clean = not problems and all(r.error_bound_ms <= max_error_ms for r in pairs.values())
        if index == len(usable) - 1 and clean:
            break
        try:
            pairs[first, second] = align(audio[first], audio[second], second, max_lag_s)
        except SyncProblem as problem:
            problems[first, second] = problem
    links: dict[str, dict[str, Link]] = {sid: {} for sid in usable}
    for (first, second), result in pairs.items():
        links[first][second] = _link(result)  # t_first from t_second
        links[second][first] = _reverse(_link(result))
    # Dijkstra from the reference over summed bounds (a handful of nodes: a plain scan)
    best: dict[str, Link] = {reference: Link(0.0, 0.0, 0.0, None, True)}
    route: dict[str, list[str]] = {reference: [reference]}
    done: set[str] = set()
    while True:
        open_nodes = [n for n in best if n not in done]
        if not open_nodes:
            break
        node = min(open_nodes, key=lambda n: best[n].bound_ms)
        done.add(node)
        for neighbour, link in links[node].items():
            candidate = _chain(best[node], link)
            if neighbour not in best or candidate.bound_ms < best[neighbour].bound_ms:
                best[neighbour] = candidate
                route[neighbour] = [*route[node], neighbour]
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
        routes_to = [links[reference].get(sid)] + [
            _chain(links[reference][middle], links[middle][sid])
            for middle in links[reference]
            if middle != sid and sid in links[middle]
        ]
        spread_ms = max(
            [abs(r.offset_s - chosen.offset_s) * 1000 for r in routes_to if r is not None] + [0.0]
        )
        if spread_ms > chosen.bound_ms:
            chosen = replace(chosen, bound_ms=spread_ms + chosen.bound_ms)
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
        )
    return out, route
