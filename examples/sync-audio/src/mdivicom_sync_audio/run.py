"""The plugin's run(): find the session's audio streams, align them, write the results."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mdivicom_sync_audio.sync import Track, estimate, read_wav

RESULTBUNDLE_TYPE = "mdivicomtools.sync_audio.v1"


def find_streams(session: Path) -> dict[str, Path]:
    """str-<id> -> its first WAV file, from raw/audio/str-<id>/*.wav."""
    streams = {}
    for folder in sorted((session / "raw" / "audio").glob("str-*")):
        wavs = sorted(folder.glob("*.wav"))
        if folder.is_dir() and wavs:
            streams[folder.name] = wavs[0]
    return streams


def run(
    dataset_dir: str,
    out_dir: str,
    config: dict[str, Any],
    *,
    work_dir: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    session = Path(dataset_dir)
    streams = find_streams(session)
    if len(streams) < 2:
        raise ValueError(
            f"{session} has {len(streams)} audio stream(s) under raw/audio/str-<id>/*.wav; "
            "syncing needs at least two"
        )
    reference = config.get("reference_stream") or next(iter(streams))
    if reference not in streams:
        raise ValueError(f"reference_stream {reference!r} is not one of {', '.join(streams)}")
    if dry_run:
        return {"status": "dry_run", "reference_stream": reference, "streams": list(streams)}
    max_lag = float(config.get("max_lag_s", 10))
    rate = int(config.get("analysis_rate_hz", 8000))
    min_confidence = float(config.get("min_confidence", 6))
    tracks = {sid: Track(sid, path, *read_wav(path)) for sid, path in streams.items()}
    results = {}
    warnings = []
    for sid, track in tracks.items():
        if sid == reference:
            results[sid] = {"offset_s": 0.0, "drift_ppm": 0.0, "confidence": None}
            continue
        found = estimate(tracks[reference], track, analysis_rate=rate, max_lag_s=max_lag)
        results[sid] = {
            "offset_s": round(found.offset_s, 6),
            "drift_ppm": found.drift_ppm,
            "confidence": round(found.confidence, 2),
        }
        if found.confidence < min_confidence:
            warnings.append(f"{sid}: low confidence {found.confidence:.1f} (< {min_confidence})")
    view = Path(out_dir, "dataset")
    write_outputs(view, tracks, reference, results, config, warnings)
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
    Path(out_dir, "provenance.json").write_text(
        json.dumps(
            {
                "tool": "sync-audio",
                "version": "0.1.0",
                "session": session.name,
                "reference_stream": reference,
                "streams": {s: str(p) for s, p in streams.items()},
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            indent=2,
        )
        + "\n"
    )
    return {
        "status": "ok",
        "reference_stream": reference,
        "offsets_s": {sid: r["offset_s"] for sid, r in results.items()},
        "warnings": warnings,
    }


def write_outputs(
    view: Path,
    tracks: dict[str, Track],
    reference: str,
    results: dict[str, dict[str, Any]],
    config: dict[str, Any],
    warnings: list[str],
) -> None:
    sync = view / "derived" / "sync"
    maps = sync / "timebase_maps"
    maps.mkdir(parents=True)
    (sync / "reports").mkdir()
    for sid, result in results.items():
        (maps / f"{sid}_timebase_map.json").write_text(
            json.dumps(
                {
                    "stream": sid,
                    "reference_stream": reference,
                    "offset_s": result["offset_s"],
                    "drift_ppm": result["drift_ppm"],
                    "confidence": result["confidence"],
                    "mapping": "t_reference = t_stream * (1 + drift_ppm * 1e-6) + offset_s",
                    "method": "gcc-phat",
                },
                indent=2,
            )
            + "\n"
        )
    lines = ["t_reference\tstream\tt_stream\tlabel\tconfidence"]
    for sid, result in results.items():
        if sid == reference:
            continue
        t_stream = tracks[sid].duration_s / 2
        lines.append(
            f"{t_stream + result['offset_s']:.6f}\t{sid}\t{t_stream:.6f}\t"
            f"xcorr-peak\t{result['confidence']}"
        )
    (sync / "sync_markers.tsv").write_text("\n".join(lines) + "\n")
    (sync / "reports" / "sync_audio.json").write_text(
        json.dumps(
            {
                "reference_stream": reference,
                "config": config,
                "streams": {
                    sid: {
                        "file": tracks[sid].path.name,
                        "rate_hz": tracks[sid].rate,
                        "duration_s": round(tracks[sid].duration_s, 3),
                        **results[sid],
                    }
                    for sid in results
                },
                "warnings": warnings,
            },
            indent=2,
        )
        + "\n"
    )
