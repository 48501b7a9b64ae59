"""A small, well-formed openSIDS dataset for tests (every check passes, no warnings)."""

from __future__ import annotations

import json
from pathlib import Path


def make_dataset(
    root: Path, sessions: int = 2, streams: tuple[str, ...] = ("cam1", "cam2")
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_manifest.yaml").write_text(
        "name: sample\nversion: 0.1.0\ndescription: two people talking\n"
    )
    for index in range(1, sessions + 1):
        ses = f"ses-{index:02d}"
        folder = root / "sessions" / ses
        folder.mkdir(parents=True)
        (folder / f"{ses}_session.yaml").write_text(f"id: {ses}\nparticipants: [p1, p2]\n")
        for stream in streams:
            sid = f"str-{stream}"
            stream_dir = folder / "raw" / "audio" / sid
            stream_dir.mkdir(parents=True)
            (stream_dir / f"{sid}_stream.yaml").write_text(
                "timebase:\n  kind: samples\n  rate_hz: 16000\n"
            )
            (stream_dir / f"{sid}.wav").write_bytes(b"RIFF")
            maps = folder / "derived" / "sync" / "timebase_maps"
            maps.mkdir(parents=True, exist_ok=True)
            (maps / f"{sid}_timebase_map.json").write_text(
                json.dumps({"reference_stream": "str-cam1", "offset_s": 0.0})
            )
        (folder / "derived" / "sync" / "sync_markers.tsv").write_text(
            "t_session\tstream\tlabel\n1.0\tstr-cam1\tclap\n"
        )
        annotations = folder / "derived" / "annotations"
        annotations.mkdir(parents=True)
        (annotations / "events.tsv").write_text(
            "onset\tduration\ttier\tlabel\tperson_id\n0.5\t1.25\tspeech\thello\tp1\n"
        )
    return root
