"""The plugin's run(): find the session's streams, align them, write the results.

Problems never pass silently: every stream whose result is doubtful (error
bound above `max_error_ms` or one too few blocks measure, a rough drift, a silent
track, a stretch of the recording the offset does not hold on) is named in the
`warnings` list that run() returns (the runner copies it into the run record
and prints it), and `strict=true` turns any of them into a failed run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mdivicom_sync_audio.io import Audio, MediaError, read_audio
from mdivicom_sync_audio.layout import find_streams
from mdivicom_sync_audio.plugin import DEFAULT_RATE_HZ, VERSION

RESULTBUNDLE_TYPE = "mdivicomtools.sync_audio.v1"
MAX_DRIFT_ERROR_PPM = 10.0
MAX_GAPS_LISTED = 100  # in a map; `gap_count` has them all


class StrictFailure(RuntimeError):
    """strict=true and at least one stream's result is doubtful."""


def recordings(streams: dict[str, list[Path]]) -> dict[str, tuple[str, Path]]:
    """Each recording to sync -> its stream and file: a stream's one file is the
    stream (`str-cam2`); each of several is a recording of its own
    (`str-cam2/GX020042.MP4`), synced on its own.

    A camera splits a long recording into chapter files (GoPro, AVCHD, most
    cameras at 4 GiB), and laying them end to end is not safe: each chapter's
    audio is encoded on its own, so a boundary can be a codec frame (21 ms) off,
    under what the continuity check sees, and the error would add up over the
    chapters. Synced on its own, each gets its own offset, drift and bound, and
    a folder of several separate recordings (takes) needs no order at all.
    """
    return {
        (sid if len(files) == 1 else f"{sid}/{path.name}"): (sid, path)
        for sid, files in streams.items()
        for path in files
    }


def chosen_tracks(setting: Any, streams: dict[str, list[Path]]) -> dict[str, int | None]:
    """Each stream's audio track from `audio_track`: one number for every stream's
    file, or a mapping from stream id to number (a camera whose second track is the
    lapel microphone, beside one-track recorders); None is the file's main track."""
    if not isinstance(setting, dict):
        return dict.fromkeys(streams, _track(setting))
    unknown = sorted(set(setting) - set(streams))
    if unknown:
        raise ValueError(
            f"audio_track names {', '.join(unknown)}, not a stream of this session "
            f"(its streams: {', '.join(streams)})"
        )
    return {sid: _track(setting.get(sid)) for sid in streams}


def _track(value: Any) -> int | None:
    """A track number as the config gives it: the schema's integer is JSON's, which
    takes 1.0 too (`--set audio_track=1.0`, a config file written by a script), and a
    float cannot index a file's tracks."""
    return None if value is None else int(value)


def read_stream(sid: str, path: Path, rate: int, track: int | None, shared: bool) -> Audio:
    """`path` read as stream `sid`; when its track cannot be read and the file has
    others, the error says how to read one for this stream alone. `shared`: the
    track was one number for every stream's file."""
    try:
        return read_audio(path, rate, track)
    except MediaError as error:
        if not error.other_tracks:
            raise
        if shared and track is not None:
            hint = (
                f"audio_track={track} is every stream's; give it per stream instead, "
                f"e.g. --set audio_track.<stream>={track} for one stream's file alone"
            )
        else:
            other = error.other_tracks[0]
            hint = f"--set audio_track.{sid}={other} reads track {other} of this stream alone"
        raise MediaError(f"{error}: {hint}", error.other_tracks) from error


def other_track_hint(problem: str, stream: str, audio: Audio, whose: str = "") -> str:
    """`problem` (a file that is silent or shares no sound with the others), and when
    the file has other audio tracks, how to read one: the main track of a camera
    can be a muted or a far microphone beside the lapel microphone's. `whose` comes
    before the file's name (`the reference's `)."""
    if audio.tracks < 2:
        return problem
    other = next(index for index in range(audio.tracks) if index != audio.track)
    return (
        f"{problem}; {whose}{audio.path.name} has {audio.tracks} audio tracks and track "
        f"{audio.track} was read: --set audio_track.{stream}={other} reads track {other}"
    )


def first_audible(
    stream: str, nodes: dict[str, tuple[str, Path]], silent: dict[str, Exception]
) -> str:
    """The first of `stream`'s recordings not `silent`; when all are, the error says
    how to choose another stream (nothing can be synced to silence)."""
    from mdivicom_sync_audio.estimate import SyncProblem

    mine = [node for node, (sid, _) in nodes.items() if sid == stream]
    for node in mine:
        if node not in silent:
            return node
    others = sorted({sid for sid, _ in nodes.values()} - {stream})
    raise SyncProblem(
        "; ".join(str(silent[node]) for node in mine)
        + f": nothing can be synced to a silent reference; --set reference_stream={others[0]} "
        "aligns to another stream"
    )


def run(
    dataset_dir: str,
    out_dir: str,
    config: dict[str, Any],
    *,
    work_dir: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    session = Path(dataset_dir)
    layout = find_streams(session)
    streams = layout.files
    if len(streams) < 2:
        # a study's root given as the dataset (`--dataset study`), a newcomer's first
        # try: "0 stream(s)" alone did not say that the streams are a level down
        study = (
            f"; it is a study, whose streams are in its sessions: give one, --dataset "
            f"{session}/sessions/<session>, or run every one with --sessions 'ses-*'"
            if not streams and (session / "sessions").is_dir()
            else ""
        )
        raise ValueError(
            f"{session} has {len(streams)} stream(s) with a media file under "
            "raw/audio/str-<id>/ or raw/video/str-<id>/; syncing needs at least two"
            + "".join(f"; {note}" for note in layout.notes)
            + study
        )
    reference = config.get("reference_stream") or next(iter(streams))
    if reference not in streams:
        raise ValueError(f"reference_stream {reference!r} is not one of {', '.join(streams)}")
    tracks = chosen_tracks(config.get("audio_track"), streams)
    if dry_run:
        return {
            "status": "dry_run",
            "reference_stream": reference,
            "streams": list(streams),
            "warnings": layout.notes,
        }
    from mdivicom_sync_audio.continuity import (
        Map,
        counterpart,
        describe,
        find_jumps,
        relative,
    )
    from mdivicom_sync_audio.estimate import SyncProblem, check_audible
    from mdivicom_sync_audio.network import solve

    max_lag = config.get("max_lag_s")
    max_error = float(config.get("max_error_ms", 1.0))
    # the user's word that split files continue each other: a cut is then no doubt
    continuous = bool(config.get("continuous_chapters"))
    rate = int(config.get("analysis_rate_hz") or DEFAULT_RATE_HZ)
    shared = not isinstance(config.get("audio_track"), dict)
    nodes = recordings(streams)
    audio = {
        node: read_stream(sid, path, rate, tracks[sid], shared)
        for node, (sid, path) in nodes.items()
    }
    # a silent track (muted camera, unplugged microphone) cannot be synced
    silent: dict[str, Exception] = {}
    for node, stream in audio.items():
        try:
            check_audible(stream, node)
        except SyncProblem as problem:
            silent[node] = SyncProblem(other_track_hint(str(problem), nodes[node][0], stream))
    # from here on, `reference` is the reference stream's first recording with sound
    # (a camera muted for its first chapter still has the others to sync on)
    reference_stream = reference
    reference = first_audible(reference_stream, nodes, silent)
    device = {node: sid for node, (sid, _) in nodes.items() if node != sid}
    results: dict[str, dict[str, Any]] = {}
    panels: dict[str, dict[str, Any]] = {}
    warnings: list[str] = [*layout.notes]
    warnings += [f"{sid}: {note}" for sid, a in audio.items() for note in a.notes]
    usable = [reference] + [node for node in audio if node != reference and node not in silent]
    for node, why in silent.items():
        warnings.append(str(why))
        results[node] = {**_entry(audio[node], None, None, None, None, "failed"), "error": str(why)}
        panels[node] = {"error": str(why)}
    solved, routes = solve(audio, reference, usable, max_lag, device)
    results[reference] = _entry(audio[reference], 0.0, 0.0, None, None, "reference")
    maps: dict[str, Map] = {reference: (0.0, None)}  # each recording on the reference's clock
    maps.update(
        (node, (found.offset_s, found.drift_ppm))
        for node, found in solved.items()
        if not isinstance(found, SyncProblem)
    )
    for sid, found in solved.items():
        stream = audio[sid]
        if isinstance(found, SyncProblem):
            failure = other_track_hint(str(found), nodes[sid][0], stream)
            warnings.append(failure)
            results[sid] = {**_entry(stream, None, None, None, None, "failed"), "error": failure}
            panels[sid] = {"error": failure}
            continue
        warnings.extend(found.notes)
        status = "ok"
        # one line must hold over the whole recording: a stretch that matches elsewhere
        # (samples lost or added without a trace) makes the offset wrong there
        other = counterpart(sid, audio, maps, reference)
        jumps = find_jumps(audio[other], stream, *relative(maps[sid], maps[other]))
        if jumps:
            status = "doubtful"
            warnings.append(describe(sid, jumps, "the reference" if other == reference else other))
        if found.rough_blocks is not None:
            # too few blocks to measure their peaks' scatter: the bound is a guess
            status = "doubtful"
            warnings.append(
                f"{sid}: only {found.rough_blocks} usable block(s) of overlap"
                + (f" through {', '.join(routes[sid][1:-1])}" if len(routes[sid]) > 2 else "")
                + f", so its bound of +-{found.error_bound_ms:.2f} ms is a guess, not measured"
            )
        if found.error_bound_ms > max_error:
            status = "doubtful"
            warnings.append(
                f"{sid}: offset {found.offset_s:+.4f} s is only good to "
                f"+-{found.error_bound_ms:.2f} ms (max_error_ms {max_error:g})"
                + (f": {found.bound_reason}" if found.bound_reason else "")
            )
        elif found.end_to_end and not continuous:
            # a tight bound that rests on an assumption the sound could not check
            status = "doubtful"
            warnings.append(
                f"{sid}: offset {found.offset_s:+.4f} s (+-{found.error_bound_ms:.2f} ms) "
                f"{found.bound_reason}"
            )
        if continuous:
            # the sound heard both files well and apart: they are not one recording
            for earlier, apart_ms in found.not_continuing.items():
                status = "doubtful"
                warnings.append(
                    f"{sid}: continuous_chapters is set, but its sound puts it "
                    f"{apart_ms / 1000:.3f} s from the end of {earlier}: not one recording "
                    "with it (separate takes?); it is placed by its sound"
                )
        if found.drift_error_ppm is not None and found.drift_error_ppm > MAX_DRIFT_ERROR_PPM:
            status = "doubtful"
            warnings.append(
                f"{sid}: drift {found.drift_ppm:+.1f} ppm is only good to "
                f"+-{found.drift_error_ppm:.0f} ppm"
                + (f": {found.drift_reason}" if found.drift_reason else "")
            )
        results[sid] = _entry(
            stream,
            found.offset_s,
            found.drift_ppm,
            found.error_bound_ms,
            found.drift_error_ppm,
            status,
        )
        results[sid]["via"] = routes[sid][1:-1]
        # the files whose place assumes they continue the file before them
        results[sid]["end_to_end"] = found.end_to_end
        results[sid]["jumps"] = [
            {
                "from_s": round(j.from_s, 3),
                "to_s": round(j.to_s, 3),
                "by_ms": round(j.by_s * 1000, 1),
            }
            for j in jumps
        ]
        results[sid]["drift_via"] = found.drift_via
        results[sid]["other_source_offsets_s"] = [
            round(other, 6) for other in found.other_source_offsets_s
        ]
        panels[sid] = {
            **found.plot,
            "offset_s": found.offset_s,
            "bound_ms": found.error_bound_ms,
            "drift_ppm": found.drift_ppm,
        }
    results = dict(sorted(results.items()))
    if not any(r["status"] in ("ok", "doubtful") for r in results.values()):
        # nothing matched the reference: its own track may be the wrong one (a camera's
        # muted or far microphone), which no other stream's failure says
        raise RuntimeError(
            other_track_hint(
                f"{session.name}: no stream could be synced: " + "; ".join(warnings),
                reference_stream,
                audio[reference],
                whose="the reference's ",
            )
        )
    if config.get("strict") and warnings:
        raise StrictFailure(f"strict: {len(warnings)} doubtful result(s): " + "; ".join(warnings))
    view = Path(out_dir, "dataset")
    write_outputs(view, audio, nodes, reference_stream, results, config, warnings, rate)
    from mdivicom_sync_audio.plot import draw

    draw(view / "derived" / "sync" / "reports" / "sync_audio.png", reference, panels)
    from mdivicomtools.resultbundle import write_resultbundle

    write_resultbundle(
        view,
        resultbundle_type=RESULTBUNDLE_TYPE,
        time_reference={"kind": "stream", "unit": "s"},
        roles={
            "derived/sync/sync_markers.tsv": "markers",
            "derived/sync/reports/sync_audio.json": "report",
        },
    )
    # no wall-clock stamp: the run record has the times, and a rerun on the same
    # files must write the same bytes
    Path(out_dir, "provenance.json").write_text(
        json.dumps(
            {
                "tool": "sync-audio",
                "version": VERSION,
                "session": session.name,
                "reference_stream": reference_stream,
                "streams": {node: str(audio[node].path) for node in nodes},
            },
            indent=2,
        )
        + "\n"
    )
    return {
        "status": "ok",
        "reference_stream": reference_stream,
        "offsets_s": {node: r["offset_s"] for node, r in results.items()},
        "warnings": warnings,
    }


def _entry(
    stream: Audio,
    offset_s: float | None,
    drift_ppm: float | None,
    bound_ms: float | None,
    drift_error_ppm: float | None,
    status: str,
) -> dict[str, Any]:
    drift = drift_ppm or 0.0
    video = []
    for item in stream.video:
        entry = dict(item)
        if offset_s is not None:
            # reference time of the video's first frame, in seconds and in its frames
            first = item["start_s"] * (1 + drift * 1e-6) + offset_s
            entry["offset_s"] = round(first, 6)
            entry["offset_frames"] = round(first * item["fps"], 3) if item["fps"] else None
        video.append(entry)
    return {
        "offset_s": None if offset_s is None else round(offset_s, 6),
        "drift_ppm": None if drift_ppm is None else round(drift_ppm, 2),
        "drift_error_ppm": None if drift_error_ppm is None else round(drift_error_ppm, 2),
        "error_bound_ms": None if bound_ms is None else round(bound_ms, 3),
        "confidence": None if not bound_ms else round(1 / bound_ms, 2),
        "status": status,
        "audio": {
            "file": stream.path.name,
            "codec": stream.codec,
            "container": stream.container,
            "rate_hz": stream.source_rate,
            "channels": stream.channels,
            "start_s": stream.start_s,
            "priming_samples_dropped": stream.priming_dropped,
            "track": stream.track,
            "tracks": stream.tracks,
            "duration_s": round(stream.duration_s, 3),
            # where the timestamps jumped: silence put in, or (negative) overlap dropped
            "gaps": [
                {"at_s": at, "length_s": length} for at, length in stream.gaps[:MAX_GAPS_LISTED]
            ],
            "gap_count": len(stream.gaps),
            # packets the decoder refused (damaged): silence in their place
            "undecodable_at_s": stream.undecodable[:MAX_GAPS_LISTED],
            "undecodable_count": len(stream.undecodable),
        },
        "video": video,
    }


def by_stream(
    nodes: dict[str, tuple[str, Path]], results: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each stream's result: its recording's, or for a stream of several files the
    first file's with every file's under `files` (each in its own time). The top
    `status` of a split stream is the whole stream's, since a consumer that reads
    only the top would otherwise take a doubtful or failed later chapter as fine."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for node, (sid, _) in nodes.items():
        grouped.setdefault(sid, []).append(results[node])
    return {
        sid: entries[0]
        if len(entries) == 1
        else {**entries[0], "status": stream_status(entries), "files": entries}
        for sid, entries in sorted(grouped.items())
    }


def stream_status(entries: list[dict[str, Any]]) -> str:
    """`failed` when no file could be synced, `doubtful` when any file is doubtful
    or failed (part of the stream is not to be trusted), else the first file's
    (`reference` or `ok`)."""
    statuses = [entry["status"] for entry in entries]
    if all(status == "failed" for status in statuses):
        return "failed"
    if any(status in ("doubtful", "failed") for status in statuses):
        return "doubtful"
    return statuses[0]


def write_outputs(
    view: Path,
    audio: dict[str, Audio],
    nodes: dict[str, tuple[str, Path]],
    reference: str,
    results: dict[str, dict[str, Any]],
    config: dict[str, Any],
    warnings: list[str],
    rate: int,
) -> None:
    """The timebase maps (one per stream), the markers and the report; `results`
    has one entry per recording (`nodes`), `reference` is the reference stream."""
    sync = view / "derived" / "sync"
    maps = sync / "timebase_maps"
    maps.mkdir(parents=True)
    (sync / "reports").mkdir()
    streams = by_stream(nodes, results)
    for sid, result in streams.items():
        (maps / f"{sid}_timebase_map.json").write_text(
            json.dumps(
                {
                    "stream": sid,
                    "reference_stream": reference,
                    **result,
                    "mapping": "t_reference = t_stream * (1 + drift_ppm * 1e-6) + offset_s",
                    "method": "onset-weighted gcc-phat, whole-overlap search, drift search",
                },
                indent=2,
            )
            + "\n"
        )
    lines = ["t_reference\tstream\tt_stream\tlabel\tconfidence"]
    for node, result in results.items():
        sid, path = nodes[node]
        if result["status"] == "reference" or result["offset_s"] is None:
            continue
        t_stream = audio[node].start_s + audio[node].duration_s / 2
        drift = (result["drift_ppm"] or 0.0) * 1e-6
        # t_stream is in the file's own time: with several files, the label names it
        label = "xcorr-peak" if node == sid else f"xcorr-peak:{path.name}"
        lines.append(
            f"{t_stream * (1 + drift) + result['offset_s']:.6f}\t{sid}\t{t_stream:.6f}\t"
            f"{label}\t{result['confidence']}"
        )
    (sync / "sync_markers.tsv").write_text("\n".join(lines) + "\n")
    (sync / "reports" / "sync_audio.json").write_text(
        json.dumps(
            {
                "reference_stream": reference,
                "analysis_rate_hz": rate,
                "config": config,
                "streams": streams,
                "warnings": warnings,
            },
            indent=2,
        )
        + "\n"
    )
