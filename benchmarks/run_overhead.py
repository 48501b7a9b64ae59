"""Benchmark: what `mdivicom run` costs on top of calling a no-op plugin directly.

Baseline, measured in the same run: a bare Python script that imports the
plugin's run module and calls run() on the same folders. Each `mdivicom run`
goes to a fresh --out (so nothing is refused) and pays for everything a user
gets: discovery of the one plugin, hook loading, validation, staging, the
dataset fingerprint, inventory, promotion and the record.

Target (issue 3): overhead <= 80 ms wall on top of the bare script, medians.

`--clock cpu` times the CPU each process used (user + system) instead of the
wall clock: on a machine shared with other work the wall time of a 100-ms
command mostly measures the neighbours.

Usage: python benchmarks/run_overhead.py [--runs 9] [--dataset-files 20] [--clock wall|cpu]
           [--markdown]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    at_least,
    cpu_timed,
    end_on_sigterm,
    measure,
    medians,
    noop_plugin_site,
    print_table,
    run_main,
    signed_ms,
    timed,
)

BARE = """
import sys
from bench_noop.run import run
run(sys.argv[1], sys.argv[2], {}, work_dir=None, dry_run=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=at_least(1), default=9, help="timed rounds, for medians (default: 9)"
    )
    parser.add_argument(
        "--dataset-files",
        type=at_least(0),
        default=20,
        help="files in the dataset both cases run on (default: 20)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what is timed: elapsed time, or the CPU each process used (user + system)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    clock = cpu_timed if args.clock == "cpu" else timed
    end_on_sigterm()
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        env = noop_plugin_site(root)
        dataset = root / "dataset"
        dataset.mkdir()
        for index in range(args.dataset_files):
            (dataset / f"f{index}.txt").write_text("x" * 100)
        bare_out = root / "bare-out"
        bare_out.mkdir()
        counter = iter(range(10_000))

        def run_cli() -> float:
            out = root / f"out-{next(counter)}"
            return clock(
                [mdivicom, "run", "noop", "--dataset", str(dataset), "--out", str(out)], env
            )

        cases = {
            "bare script (import + run())": lambda: clock(
                [sys.executable, "-c", BARE, str(dataset), str(bare_out)], env
            ),
            "mdivicom run noop": run_cli,
            "floor: import click, importlib.metadata, msgspec, pluggy": lambda: clock(
                [sys.executable, "-c", "import click, importlib.metadata, msgspec, pluggy"], env
            ),
        }
        samples = measure(cases, args.runs)
    med = medians(samples)
    bare, cli = med["bare script (import + run())"], med["mdivicom run noop"]
    floor = med["floor: import click, importlib.metadata, msgspec, pluggy"]
    rows = [
        ("bare script (import + run())", f"{bare * 1000:.0f} ms", "baseline", ""),
        (
            "mdivicom run noop",
            f"{cli * 1000:.0f} ms",
            f"{signed_ms(cli - bare)} over baseline",
            "<= +80 ms",
        ),
        (
            "floor: import click, importlib.metadata, msgspec, pluggy",
            f"{floor * 1000:.0f} ms",
            f"{signed_ms(floor - bare)} over baseline",
            "what the dependencies alone cost",
        ),
    ]
    print_table(
        f"# run overhead: no-op python plugin, {args.dataset_files}-file dataset; "
        f"median of {args.runs} runs; {args.clock} time; Python {sys.version.split()[0]}",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    run_main(main)
