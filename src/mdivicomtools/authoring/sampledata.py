"""A small, well-formed openSIDS sample dataset, for checks and plugin authors' tests.

Stdlib only (wave, json): `plugins check` and the pytest fixtures must work
wherever mdivicomtools does. `mdivicom dataset check` finds nothing to report on
what this writes.
"""

from __future__ import annotations

import json
import math
import random
import struct
import wave
from pathlib import Path

RATE_HZ = 16_000


def _write_wav(path: Path, seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    frames = bytearray()
    for index in range(int(seconds * RATE_HZ)):
        tone = 0.3 * math.sin(2 * math.pi * 440 * index / RATE_HZ)
        frames += struct.pack("<h", int(32767 * (tone + 0.05 * rng.uniform(-1, 1))))
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE_HZ)
        handle.writeframes(bytes(frames))


def make_sample_dataset(
    root: str | Path,
    *,
    sessions: int = 2,
    streams: tuple[str, ...] = ("cam1", "cam2"),
    seconds: float = 1.0,
) -> Path:
    """Write the dataset under `root` and return it; session folders are sessions/ses-NN/."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "dataset_manifest.yaml").write_text(
        "name: mdivicomtools sample\nversion: 0.1.0\ndescription: two people talking\n",
        encoding="utf-8",
    )
    for number in range(1, sessions + 1):
        session = f"ses-{number:02d}"
        folder = base / "sessions" / session
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{session}_session.yaml").write_text(
            f"id: {session}\nparticipants: [p1, p2]\n", encoding="utf-8"
        )
        sync = folder / "derived" / "sync"
        (sync / "timebase_maps").mkdir(parents=True, exist_ok=True)
        for index, stream in enumerate(streams):
            sid = f"str-{stream}"
            stream_dir = folder / "raw" / "audio" / sid
            stream_dir.mkdir(parents=True, exist_ok=True)
            (stream_dir / f"{sid}_stream.yaml").write_text(
                f"timebase:\n  kind: samples\n  rate_hz: {RATE_HZ}\n", encoding="utf-8"
            )
            _write_wav(stream_dir / f"{sid}.wav", seconds, seed=number * 100 + index)
            (sync / "timebase_maps" / f"{sid}_timebase_map.json").write_text(
                json.dumps({"reference_stream": f"str-{streams[0]}", "offset_s": 0.0}),
                encoding="utf-8",
            )
        (sync / "sync_markers.tsv").write_text(
            f"t_reference\tstream\tlabel\n0.5\tstr-{streams[0]}\tclap\n", encoding="utf-8"
        )
        annotations = folder / "derived" / "annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        (annotations / "events.tsv").write_text(
            "onset\tduration\ttier\tlabel\tperson_id\n0.2\t0.5\tspeech\thello\tp1\n",
            encoding="utf-8",
        )
    return base
