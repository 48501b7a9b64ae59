"""What chapter files cost sync-audio: one session recorded whole, then split.

A camera splits a long recording into chapter files (GoPro, AVCHD, most
cameras at 4 GiB), and sync-audio syncs each file on its own. The same
session of four streams is laid out five ways: every stream one file; two
cameras split into chapters of --chapter-minutes; the reference camera
split too (its first chapter is then the reference, and the others'
later chapters meet it only through other streams); and the two split
layouts again without the pruning of pairs (files whose places on the
reference's clock share under 10 s are paired anyway): what the pruning saves.

The scene is the sample generator's (claps and speech-like bursts) at 16
kHz, cut exactly for each file, so the truth of every file's offset is
known to the sample. Each layout runs the plugin's run() in a child process of its own
(the runner's overhead is in run_overhead.py); CPU is that process's user +
system time, medians of --runs runs (the layouts take turns, one run each
per round, with no untimed warm-up: a run is seconds to minutes of CPU), and
the ratio is against the one-file layout measured in the same run.

    python benchmarks/sync_chapters.py [--minutes 20] [--chapter-minutes 4] [--runs 3]

with mdivicomtools and examples/sync-audio installed in the Python that runs it.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import at_least, end_on_sigterm, positive, require_sync_audio, run_main

RATE = 16_000
# stream -> (start in the scene s, seconds cut from the end of the session)
STREAMS = {
    "str-a-camera": (0.0, 0.0),
    "str-b-camera": (3.25, 60.0),
    "str-c-camera": (61.7, 30.0),
    "str-d-recorder": (10.4, 45.0),
}
# name, the streams split into chapters, whether files placed apart are paired
LAYOUTS = (
    ("one file per stream", (), "pruned"),
    ("chapters", ("str-b-camera", "str-c-camera"), "pruned"),
    ("chapters, every pair", ("str-b-camera", "str-c-camera"), "unpruned"),
    ("chapters, the reference too", ("str-a-camera", "str-b-camera", "str-c-camera"), "pruned"),
    (
        "chapters, the reference too, every pair",
        ("str-a-camera", "str-b-camera", "str-c-camera"),
        "unpruned",
    ),
)
#: the shortest session that leaves every stream 20 s of sound
SHORTEST_S = max(start + short for start, short in STREAMS.values()) + 20.0
CHILD = """
import json, sys
from mdivicom_sync_audio import network
from mdivicom_sync_audio.run import run
if sys.argv[3] == "unpruned":
    network._little_common_time = lambda *args: False
result = run(sys.argv[1], sys.argv[2], {})
print(json.dumps(result["offsets_s"]))
"""


def lay_out(
    root: Path, sound: np.ndarray, minutes: float, chapter_s: float, split: tuple[str, ...]
) -> dict:
    """The session's files; each file's node id -> its true offset (s)."""
    from mdivicom_sync_audio.io import write_wav

    truth = {}
    for sid, (start, short) in STREAMS.items():
        length = minutes * 60 - start - short
        pieces = np.arange(0, length, chapter_s) if sid in split else np.array([0.0])
        for number, at in enumerate(pieces, 1):
            seconds = min(chapter_s, length - at) if len(pieces) > 1 else length
            name = f"GX{number:02d}0042.wav"
            first = int((start + at) * RATE)
            path = root / "raw/audio" / sid / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, RATE, sound[first : first + int(seconds * RATE)])
            truth[sid if len(pieces) == 1 else f"{sid}/{name}"] = start + at
    reference = next(iter(truth))  # the first file of the first stream
    return {node: value - truth[reference] for node, value in truth.items()}


def run_once(session: Path, out: Path, mode: str) -> tuple[float, dict]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(session), str(out), mode],
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"sync-audio failed on {session}: {result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=positive, default=20.0)
    parser.add_argument("--chapter-minutes", type=positive, default=4.0)
    parser.add_argument("--runs", type=at_least(1), default=3)
    args = parser.parse_args()
    end_on_sigterm()
    if args.minutes * 60 < SHORTEST_S:
        parser.error(
            f"--minutes must be at least {SHORTEST_S / 60:.2f}: a stream starts "
            f"{STREAMS['str-c-camera'][0]} s in and ends {STREAMS['str-c-camera'][1]:g} s "
            "before the end, and needs 20 s of its own"
        )
    # a split stream no longer than a chapter stays one file: its "chapters" rows
    # would time the one-file layout again under another name
    shortest, sid = min(
        (args.minutes * 60 - start - short, sid)
        for sid, (start, short) in STREAMS.items()
        if any(sid in split for _name, split, _mode in LAYOUTS)
    )
    if args.chapter_minutes * 60 >= shortest:
        parser.error(
            f"--chapter-minutes must be under {shortest / 60:.2f} with --minutes "
            f"{args.minutes:g}: {sid} is {shortest:.1f} s long, and a stream no longer "
            "than a chapter is not split"
        )
    require_sync_audio()
    from mdivicom_sync_audio.sample import scene

    sound = scene(np.random.default_rng(5), args.minutes * 60, RATE)
    with tempfile.TemporaryDirectory(prefix="sync-chapters-") as tmp:
        sessions, truths = [], []
        for _name, split, _mode in LAYOUTS:
            session = Path(tmp, "-".join(split) or "whole", "ses-01")
            if not session.exists():
                truth = lay_out(session, sound, args.minutes, args.chapter_minutes * 60, split)
                (session.parent / "truth.json").write_text(json.dumps(truth))
            sessions.append(session)
            truths.append(json.loads((session.parent / "truth.json").read_text()))
        cpus: list[list[float]] = [[] for _ in LAYOUTS]
        worst, failed = [0.0] * len(LAYOUTS), [0] * len(LAYOUTS)
        for run in range(args.runs):  # the layouts take turns, so the load falls on all alike
            for number, (_name, _split, mode) in enumerate(LAYOUTS):
                truth = truths[number]
                cpu, offsets = run_once(sessions[number], Path(tmp, f"out-{number}-{run}"), mode)
                cpus[number].append(cpu)
                found = {node: offsets[node] for node in truth if offsets[node] is not None}
                failed[number] = max(failed[number], len(truth) - len(found))
                worst[number] = max(
                    [worst[number]] + [abs(found[node] - truth[node]) * 1000 for node in found]
                )
    rows = [
        (name, len(truths[number]), failed[number], statistics.median(cpus[number]), worst[number])
        for number, (name, _split, _mode) in enumerate(LAYOUTS)
    ]
    base = rows[0][3]
    print(
        f"# sync chapters: {args.minutes:g}-min session, 4 streams, split into "
        f"{args.chapter_minutes:g}-min chapters; CPU medians of {args.runs}"
    )
    print("| layout | files | not synced | CPU | ratio | worst error |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, files, failed, cpu, worst in rows:
        print(f"| {name} | {files} | {failed} | {cpu:.1f} s | {cpu / base:.2f}x | {worst:.3f} ms |")


if __name__ == "__main__":
    run_main(main)
