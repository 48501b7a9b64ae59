"""Benchmark: commands on a run root with a long history, against a run root of one run.

A lab's --out collects thousands of run records over the years, and a plugin
that writes tables lists thousands of output files in each. A real run of a
python plugin writes --outputs files; its record is then copied into
--records older runs of their own ids (the history). Each command is timed,
in fresh processes, on that run root and on a copy holding only the real run
(the baseline, measured in the same rounds), and its peak memory is taken
once. Listing has to read every record, so `runs list` (filtered with
`--plugin --status --since --last` or not) and `runs show latest` grow with
the history; what needs one run (`runs show ID`, a new run into the plugin's
existing output with --overwrite) should not.

Targets: `runs show ID` and `run --overwrite` within 1.5x of the one-run root;
no command holds more than 100 MiB whatever the history.

The same for batch summaries (--batches of --batch-sessions sessions each,
copies of one summary under ids of their own, against a run root of one):
`batches show latest` and `batches show ID` read the one summary they show,
so they should cost what they cost on one summary (target <= 1.5x, and the
same 100 MiB); `batches list` reads every summary.

Usage: python benchmarks/records.py [--records 1000] [--outputs 2000] [--runs 5] [--markdown]
           [--batches 300] [--batch-sessions 500]

Run it with PYTHONPATH naming another checkout's `src` to measure that one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).parent))
from _common import at_least, end_on_sigterm, measure, medians, print_table, run_main, timed

WRITER = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for i in range(int(config["files"])):
        folder = pathlib.Path(out_dir, f"tables-{i // 500:03}")
        folder.mkdir(exist_ok=True)
        (folder / f"session-table-{i:06}.csv").write_text("onset,duration\\n0,1\\n")
"""

MANIFEST = {
    "meta": {
        "api_version": "mdivicomtools.plugin.v0.1",
        "id": "writer",
        "publisher": "bench",
        "kind": "python",
        "version": "1.0.0",
        "description": "Writes tables.",
    },
    "entry": {"callable": "bench_writer:run"},
}

#: the peak memory of one command, in a helper process whose only child it is
PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def history(out: Path, count: int) -> None:
    """`count` copies of the run root's one record, older runs of ids of their own."""
    [record] = (out / "_runs").glob("*.json")
    data = json.loads(record.read_text())
    for n in range(count):
        day, minute = divmod(n, 1440)
        stamp = f"2024{1 + day // 28:02}{1 + day % 28:02}T{minute // 60:02}{minute % 60:02}00Z"
        run_id = f"{stamp}_{n:08x}"
        data.update(run_id=run_id, started_at=f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T00:00:00Z")
        (out / "_runs" / f"{run_id}.json").write_text(json.dumps(data))


def summaries(one: Path, long: Path, args: argparse.Namespace) -> tuple[str, str]:
    """A run root with one batch summary of --batch-sessions sessions, and one with
    --batches copies of it under ids of their own; the first one's id, and the
    oldest copy's (`batches show ID` reads that one summary alone)."""
    from mdivicomtools.batch.session import SessionResult
    from mdivicomtools.batch.summary import BatchSummary

    sessions = [
        SessionResult(
            session=f"ses-{n:04}",
            status="succeeded",
            run_id=f"20240101T000000Z_{n:08x}",
            duration_s=12.5,
            out=str(one / f"ses-{n:04}"),
        )
        for n in range(args.batch_sessions)
    ]
    ids = [f"2024{1 + n // 1440 // 28:02}{1 + n // 1440 % 28:02}T{n % 1440 // 60:02}"
           f"{n % 60:02}00Z_{n:08x}" for n in range(args.batches)]  # fmt: skip
    for root, count in ((one, 1), (long, args.batches)):
        (root / "_batches").mkdir(parents=True)
        for batch_id in ids[-count:]:
            summary = BatchSummary(
                batch_id=batch_id,
                status="succeeded",
                plugin="bench/writer",
                plugin_version="1.0.0",
                config_sha256="0" * 64,
                dataset_dir=str(root / "dataset"),
                out_dir=str(root),
                sessions_glob="ses-*",
                executor="local",
                scheduler=None,
                jobs=2,
                started_at="2024-01-01T00:00:00Z",
                finished_at="2024-01-01T01:00:00Z",
                duration_s=3600.0,
                totals={"succeeded": args.batch_sessions},
                sessions=sessions,
            )
            (root / "_batches" / f"{batch_id}.json").write_bytes(msgspec.json.encode(summary))
    return ids[-1], ids[0]


def peak_mib(argv: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *argv], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records", type=at_least(1), default=1000, help="older runs copied in (default: 1000)"
    )
    parser.add_argument(
        "--outputs", type=at_least(1), default=2000, help="output files per run (default: 2000)"
    )
    parser.add_argument(
        "--batches", type=at_least(1), default=300, help="batch summaries (default: 300)"
    )
    parser.add_argument(
        "--batch-sessions",
        type=at_least(1),
        default=500,
        help="sessions per batch summary (default: 500)",
    )
    parser.add_argument(
        "--runs", type=at_least(1), default=5, help="timed rounds, for medians (default: 5)"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    end_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        (root / "site").mkdir()
        (root / "site" / "bench_writer.py").write_text(WRITER)
        (root / "manifests").mkdir()
        (root / "manifests" / "writer.json").write_text(json.dumps(MANIFEST))
        (root / "dataset").mkdir()
        (root / "dataset" / "a.txt").write_text("a")
        paths = [str(root / "site"), os.environ.get("PYTHONPATH", "")]
        pythonpath = os.pathsep.join(path for path in paths if path)
        env = dict(os.environ, PYTHONPATH=pythonpath, MDIVICOM_PLUGIN_PATH=str(root / "manifests"))
        mdivicom = [sys.executable, "-m", "mdivicomtools"]
        one, long = root / "one", root / "long"
        timed(
            [*mdivicom, "run", "writer", "--dataset", str(root / "dataset"), "--out", str(one),
             "--set", f"files={args.outputs}"],
            env,
        )  # fmt: skip
        [record] = (one / "_runs").glob("*.json")
        shutil.copytree(one, long)
        history(long, args.records)
        one_batch, long_batches = root / "batches-one", root / "batches-long"
        # the only summary of the one-summary root; the oldest of the other
        ids = summaries(one_batch, long_batches, args)
        shown = dict(zip((one_batch, long_batches), ids, strict=True))
        commands = {
            "runs list": lambda out: ["runs", "list", str(out)],
            "runs list, filtered": lambda out: [
                "runs", "list", str(out), "--plugin", "writer", "--status", "succeeded",
                "--since", "2024-01-01", "--last", "10",
            ],
            "runs show latest": lambda out: ["runs", "show", str(out), "latest"],
            "runs show ID": lambda out: ["runs", "show", str(out), record.stem],
            "run --overwrite": lambda out: [
                "run", "writer", "--dataset", str(root / "dataset"), "--out", str(out),
                "--overwrite", "--set", "files=1",
            ],
        }  # fmt: skip
        batch_commands = {
            "batches list": lambda out: ["batches", "list", str(out)],
            "batches show latest": lambda out: ["batches", "show", str(out), "latest"],
            "batches show ID": lambda out: ["batches", "show", str(out), shown[out]],
        }
        cases = {}
        for name, command in commands.items():
            for label, out in (("1 record", one), (f"{args.records + 1} records", long)):
                cases[f"{name}, {label}"] = partial(timed, [*mdivicom, *command(out)], env)
        for name, command in batch_commands.items():
            for label, out in (("1 summary", one_batch), ("many", long_batches)):
                cases[f"{name}, {label}"] = partial(timed, [*mdivicom, *command(out)], env)
        samples = measure(cases, args.runs)
        peaks = {
            name: peak_mib([*mdivicom, *command(out)], env)
            for name, command in commands.items()
            for out in (long,)
        }
        batch_peaks = {
            name: peak_mib([*mdivicom, *command(long_batches)], env)
            for name, command in batch_commands.items()
        }
        summary_mib = sum(p.stat().st_size for p in (long_batches / "_batches").iterdir()) / 2**20
    med = medians(samples)
    rows = []
    for name in commands:
        base = med[f"{name}, 1 record"]
        big = med[f"{name}, {args.records + 1} records"]
        target = "<= 1.5x" if name in ("runs show ID", "run --overwrite") else ""
        rows.append((f"{name}, 1 record", f"{base:.2f} s", "baseline", ""))
        rows.append(
            (
                f"{name}, {args.records + 1} records",
                f"{big:.2f} s, {peaks[name]:.0f} MiB",
                f"{big / base:.2f}x the 1-record root",
                target + (", " if target else "") + "<= 100 MiB",
            )
        )
    print_table(
        f"# records: {args.records + 1} records of {args.outputs} output files each; "
        f"median of {args.runs} runs; fresh processes",
        rows,
        args.markdown,
    )
    print()
    rows = []
    for name in batch_commands:
        base, big = med[f"{name}, 1 summary"], med[f"{name}, many"]
        target = "" if name == "batches list" else "<= 1.5x, "
        rows.append((f"{name}, 1 summary", f"{base:.2f} s", "baseline", ""))
        rows.append(
            (
                f"{name}, {args.batches} summaries",
                f"{big:.2f} s, {batch_peaks[name]:.0f} MiB",
                f"{big / base:.2f}x the 1-summary root",
                target + "<= 100 MiB",
            )
        )
    print_table(
        f"# batch summaries: {args.batches} of {args.batch_sessions} sessions each "
        f"({summary_mib:.0f} MiB); median of {args.runs} runs; fresh processes",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    run_main(main)
