"""Two runs of benchmarks/sync_accuracy.py on the same rooms, stream by stream.

A change to sync-audio is judged by running the release and the change on
rooms rendered for it (`sync_accuracy.py --render-only`, then `--json` for
each) against a rule written beforehand. The rules are written in a few
quantities per run; this prints them side by side, and every stream whose
answer moved, so that a rule is checked the same way each time and the
streams behind a difference can be looked at.

    python benchmarks/sync_compare.py BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _common import run_main
from sync_accuracy import violated

SAME_ERROR_MS = 0.05  # closer than this the two answers are the same place
SAME_BOUND = 0.05  # relative: a bound this close is the same
SAME_DRIFT_PPM = 0.5


def load(path: Path) -> dict[tuple[int, str, str], dict]:
    """The run's rows by (seed, condition, stream), and its CPU by (seed, condition)."""
    run = json.loads(path.read_text())
    rows = {(r["seed"], r["condition"], r["stream"]): r for r in run["streams"]}
    cpu = {(s["seed"], s["condition"]): s["cpu"].get("ours", 0.0) for s in run["sessions"]}
    return {
        "rows": rows,
        "cpu": cpu,
        "rooms": (run["reference"], run["long"], run.get("chapters")),
        "sets": run.get("sets", []),
    }


def summary(rows: list[dict], cpu: float) -> list[str]:
    """The quantities the judge rules are written in, as table cells."""
    errors = [r["errors"]["ours"] for r in rows]
    quiet_wrong = [r for r in rows if r["status"] == "ok" and r["errors"]["ours"] > 2]
    drifting = [r for r in rows if r["drift_error"] is not None]
    return [
        f"{sum(e <= 0.5 for e in errors)}/{len(rows)}",
        f"{sum(e <= 2 for e in errors)}/{len(rows)}",
        f"{statistics.median(errors):.3f}",
        f"{max(errors):.2f}",
        f"{sum(not violated(r) for r in rows)}/{len(rows)}",
        str(len(quiet_wrong)),
        str(sum(r["status"] != "ok" for r in rows)),
        f"{sum(r['drift_error'] <= 10 for r in drifting)}/{len(drifting)}",
        f"{cpu:.1f}",
    ]


def moved(before: dict, after: dict) -> bool:
    """Whether a stream's answer, bound, status or drift differs between the runs."""
    if before["status"] != after["status"]:
        return True
    if abs(before["errors"]["ours"] - after["errors"]["ours"]) > SAME_ERROR_MS:
        return True
    low, high = sorted([before["bound"] or 0.0, after["bound"] or 0.0])
    if high - low > SAME_BOUND * max(high, 1e-9):
        return True
    drifts = [before["drift_off"], after["drift_off"]]
    if (drifts[0] is None) != (drifts[1] is None):
        return True
    return drifts[0] is not None and abs(drifts[0] - drifts[1]) > SAME_DRIFT_PPM


def _stream(row: dict) -> str:
    drift = "-" if row["drift_off"] is None else f"{row['drift_off']:.1f}"
    bound = "-" if row["bound"] is None else f"{row['bound']:.2f}"
    flag = " VIOLATED" if violated(row) else ""
    return f"{row['errors']['ours']:.3f} / {bound} / {row['status']}{flag} / {drift}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before, after = load(args.before), load(args.after)
    if before["rooms"] != after["rooms"]:
        print(
            "the two runs are of different rooms (--reference, --long or --chapters)",
            file=sys.stderr,
        )
        return 2
    shared = sorted(set(before["rows"]) & set(after["rows"]))
    alone = len(set(before["rows"]) ^ set(after["rows"]))
    if not shared:
        print("the two runs have no stream in common (other seeds?)", file=sys.stderr)
        return 2
    print(f"# {args.before} -> {args.after}: {len(shared)} streams in both, {alone} in one only")
    if before["sets"] or after["sets"]:
        settings = [" ".join(run["sets"]) or "none" for run in (before, after)]
        print(f"# sync-audio settings: {settings[0]} -> {settings[1]}")
    print()
    print(
        "| seed | condition | stream "
        "| before: error ms / bound ms / status / drift off ppm | after |"
    )
    print("|---|---|---|---|---|")
    changed = 0
    for key in shared:
        old, new = before["rows"][key], after["rows"][key]
        if moved(old, new):
            changed += 1
            print(f"| {key[0]} | {key[1]} | {key[2]} | {_stream(old)} | {_stream(new)} |")
    print()
    print(f"{changed} of {len(shared)} streams moved")
    print()
    print(
        "| run | within 0.5 ms | within 2 ms | median ms | worst ms | bound held "
        "| unwarned > 2 ms | warned | drifts within 10 ppm | CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, run in ((args.before, before), (args.after, after)):
        sessions = {key[:2] for key in shared}  # CPU of the sessions both ran
        cpu = sum(run["cpu"].get(session, 0.0) for session in sessions)
        cells = summary([run["rows"][key] for key in shared], cpu)
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    run_main(main)
