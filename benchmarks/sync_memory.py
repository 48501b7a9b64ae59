"""Peak memory of sync-audio on a 2-hour 48 kHz stereo recorder file.

The session is what a lab records: a 2-hour stereo FLAC from the room's
recorder (low-level noise with a sync cue, a short noise burst, about once a
minute) and a 30-minute camera MP4 (AAC) that started 3.25 s later and hears
the same cues. Both are written in blocks into a temporary folder, then one
`mdivicom run sync-audio` runs in a child process, and its peak resident set
size is read from getrusage(RUSAGE_CHILDREN) after it ends. Target: 500 MB.

    python benchmarks/sync_memory.py [--hours 2] [--camera-minutes 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import end_on_sigterm, positive, require_sync_audio, run_main

RATE = 48_000
CAMERA_START_S = 3.25
BLOCK_S = 60
#: beside the session in the folder: the sizes it was written with, once both files are
#: complete (a --keep folder is reused only for the same sizes)
SIZES = "sizes.json"


def cue_times(seconds: float) -> list[float]:
    """One cue per minute, at an irregular second within it (so no period aliases)."""
    return [60 * k + 7 + (k * 7.77) % 40 for k in range(int(seconds // 60) + 1)]


def cue(k: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + k)
    length = int(0.4 * RATE)
    return rng.standard_normal(length) * np.exp(-np.arange(length) / (0.08 * RATE)) * 0.3


def block(start_s: float, seconds: float, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Room time start_s .. start_s + seconds: noise at about -55 dBFS plus any cues."""
    count = int(seconds * RATE)
    out = rng.standard_normal((count, channels)) * 0.002
    for k, at in enumerate(cue_times(start_s + seconds + 1)):
        first = round((at - start_s) * RATE)
        burst = cue(k)
        lo, hi = max(0, first), min(count, first + len(burst))
        if hi > lo:
            out[lo:hi] += burst[lo - first : hi - first, None]
    return out


def write(path: Path, codec: str, seconds: float, offset_s: float, channels: int) -> None:
    rng = np.random.default_rng(7 if codec == "flac" else 8)
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=RATE)
        stream.layout = layout
        fmt = "s16" if codec == "flac" else "fltp"
        if codec == "flac":
            stream.format = "s16"
        written = 0
        for start in np.arange(0, seconds, BLOCK_S):
            data = block(offset_s + start, min(BLOCK_S, seconds - start), channels, rng)
            for lo in range(0, len(data), 4096):
                piece = data[lo : lo + 4096]
                if fmt == "s16":
                    array = np.round(piece * 32767).astype(np.int16).reshape(1, -1)
                else:
                    array = np.ascontiguousarray(piece.T.astype(np.float32))
                frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
                frame.rate = RATE
                frame.pts = written
                written += len(piece)
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def session_written(root: Path, sizes: dict[str, float]) -> bool:
    """Whether root (a --keep folder) holds the session of these sizes, written to its end.

    Reusing a session of other sizes printed the sizes asked for over the files of
    another run (a 2-hour title over a 3-minute recorder file), and a session cut
    short by Ctrl-C was reused as it was, or ended in FileExistsError.
    """
    try:
        return bool(json.loads((root / SIZES).read_text()) == sizes)
    except (OSError, ValueError):
        return False


def write_session(root: Path, sizes: dict[str, float], recorder: Path, camera: Path) -> None:
    """Both files of the session, anew; the sizes file last, once they are complete."""
    (root / SIZES).unlink(missing_ok=True)
    shutil.rmtree(root / "ses-long", ignore_errors=True)
    recorder.parent.mkdir(parents=True)
    camera.parent.mkdir(parents=True)
    write(recorder, "flac", sizes["hours"] * 3600, 0.0, 2)
    write(camera, "aac", sizes["camera_minutes"] * 60, CAMERA_START_S, 1)
    (root / SIZES).write_text(json.dumps(sizes))


def run_sync_audio(command: list[str], session: Path, out: Path) -> float:
    """Wall time of the run; its own lines (what it did, its warnings) go to stderr,
    where they are seen, not into stdout, which is the Markdown table alone."""
    started = time.perf_counter()
    argv = [*command, "--dataset", str(session), "--out", str(out)]
    done = subprocess.run(argv, stdout=sys.stderr)
    if done.returncode != 0:  # its own messages are above
        raise SystemExit(f"mdivicom run sync-audio failed (exit status {done.returncode})")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=positive, default=2.0)
    parser.add_argument("--camera-minutes", type=positive, default=30.0)
    parser.add_argument(
        "--keep",
        type=Path,
        help="write the session here and keep it; a later run with the same sizes reuses it",
    )
    args = parser.parse_args()
    end_on_sigterm()
    require_sync_audio()
    root = args.keep or Path(tempfile.mkdtemp(prefix="sync-memory-"))
    session = root / "ses-long"
    recorder = session / "raw" / "audio" / "str-a-recorder" / "recorder.flac"
    camera = session / "raw" / "video" / "str-b-camera" / "camera.mp4"
    sizes = {"hours": args.hours, "camera_minutes": args.camera_minutes}
    try:
        started = time.perf_counter()
        if not session_written(root, sizes):
            write_session(root, sizes, recorder, camera)
        made = time.perf_counter() - started
        mdivicom = str(Path(sys.executable).with_name("mdivicom"))
        out = root / "out"
        shutil.rmtree(out, ignore_errors=True)
        elapsed = run_sync_audio([mdivicom, "run", "sync-audio"], session, out)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        found = json.loads(
            (
                out / "sync-audio/dataset/derived/sync/timebase_maps/str-b-camera_timebase_map.json"
            ).read_text()
        )
        error_ms = (found["offset_s"] - CAMERA_START_S) * 1000
        print(
            f"# sync memory: {args.hours:g} h 48 kHz stereo FLAC "
            f"({recorder.stat().st_size / 2**20:.0f} MiB) + {args.camera_minutes:g} min AAC "
            f"camera MP4; files written in {made:.0f} s"
        )
        print("| case | peak RSS | wall time | offset error | target |")
        print("|---|---:|---:|---:|---|")
        print(
            f"| mdivicom run sync-audio | {peak_mb:.1f} MiB ({peak_mb * 2**20 / 1e6:.0f} MB) | "
            f"{elapsed:.1f} s | "
            f"{error_ms:+.3f} ms (bound {found['error_bound_ms']} ms) | <= 500 MB |"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
