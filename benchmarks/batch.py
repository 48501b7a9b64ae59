"""Benchmark: batch runs over 16 sessions on the local and the Dask executor.

1. 16 sessions of a CPU-bound python plugin (about 0.5 s each, calibrated in
   this run): `--jobs 1` is the baseline; `--jobs 2` (target >= 1.8x faster on
   2 cores) and `--executor dask --jobs 2` (a LocalCluster of 2 single-threaded
   worker processes; target >= 1.7x).
2. Scheduling overhead of the local executor: 16 no-op sessions against 1,
   with `--jobs 1`; the marginal wall time per session minus what one no-op
   run costs in-process (measured here too). Target <= 50 ms.

Usage: python benchmarks/batch.py [--runs 3] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import print_table, timed
from mdivicomtools.authoring.sampledata import make_sample_dataset as make_dataset

PLUGIN = """
def get_plugin():
    return {"meta": {"api_version": "mdivicomtools.plugin.v0.1", "id": "%(id)s",
                     "kind": "python", "version": "1.0.0", "description": "bench",
                     "publisher": "bench"},
            "entry": {"callable": "bench_batch.run:%(func)s"}}
"""
RUN = """
def burn(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    total = 0
    for i in range(config["n"]):
        total += i * i
    return {"total": total}

def noop(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return None
"""


def make_site(root: Path) -> None:
    pkg = root / "bench_batch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text(RUN)
    entries = []
    for plugin_id, func in (("burn", "burn"), ("noop", "noop")):
        (pkg / f"plugin_{func}.py").write_text(PLUGIN % {"id": plugin_id, "func": func})
        entries.append(f"{plugin_id} = bench_batch.plugin_{func}:get_plugin")
    dist = root / "bench_batch-1.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-batch\nVersion: 1.0.0\n")
    (dist / "entry_points.txt").write_text("[mdivicomtools.plugins]\n" + "\n".join(entries) + "\n")


def calibrate(seconds: float) -> int:
    n = 200_000
    while True:
        start = time.perf_counter()
        total = 0
        for i in range(n):
            total += i * i
        elapsed = time.perf_counter() - start
        if elapsed > 0.1:
            return int(n * seconds / elapsed)
        n *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    n = calibrate(0.5)
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        make_site(root / "site")
        dataset = make_dataset(root / "study", sessions=args.sessions)
        env = dict(os.environ, PYTHONPATH=str(root / "site"), MDIVICOM_PLUGIN_PATH="")
        counter = iter(range(100_000))

        def batch(plugin: str, *extra: str) -> float:
            out = root / f"out-{next(counter)}"
            return timed(
                [
                    mdivicom,
                    "run",
                    plugin,
                    "--dataset",
                    str(dataset),
                    "--out",
                    str(out),
                    "--sessions",
                    "ses-*",
                    "--set",
                    f"n={n}",
                    *extra,
                ],
                env,
            )

        cases = {
            "--jobs 1": lambda: batch("burn", "--jobs", "1"),
            "--jobs 2": lambda: batch("burn", "--jobs", "2"),
            "--executor dask --jobs 2": lambda: batch("burn", "--executor", "dask", "--jobs", "2"),
            "noop x16 --jobs 1": lambda: batch("noop", "--jobs", "1"),
            "noop x1 --jobs 1": lambda: batch("noop", "--jobs", "1", "--sessions", "ses-01"),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                samples[name].append(case())
        sys.path.insert(0, str(root / "site"))
        from mdivicomtools.runner import run_plugin

        in_process = []
        for index in range(5):
            start = time.perf_counter()
            run_plugin(
                "noop", dataset=dataset / "sessions" / "ses-01", out=root / f"inproc-{index}"
            )
            in_process.append(time.perf_counter() - start)
    med = {name: statistics.median(values) for name, values in samples.items()}
    one = med["--jobs 1"]
    marginal = (med["noop x16 --jobs 1"] - med["noop x1 --jobs 1"]) / (args.sessions - 1)
    run_cost = statistics.median(in_process)
    rows = [
        (f"{args.sessions} x burn, --jobs 1", f"{one:.2f} s", "baseline", ""),
        (
            f"{args.sessions} x burn, --jobs 2",
            f"{med['--jobs 2']:.2f} s",
            f"{one / med['--jobs 2']:.2f}x faster",
            ">= 1.8x",
        ),
        (
            f"{args.sessions} x burn, dask 2 workers",
            f"{med['--executor dask --jobs 2']:.2f} s",
            f"{one / med['--executor dask --jobs 2']:.2f}x faster",
            ">= 1.7x",
        ),
        ("marginal wall time per no-op session", f"{marginal * 1000:.0f} ms", "", ""),
        ("one no-op run in-process", f"{run_cost * 1000:.0f} ms", "", ""),
        (
            "local scheduling overhead per session",
            f"{(marginal - run_cost) * 1000:.0f} ms",
            "",
            "<= 50 ms",
        ),
    ]
    print_table(
        f"# batch: {args.sessions} sessions, burn ~0.5 s each (n={n}); median of "
        f"{args.runs} runs; {os.cpu_count()} CPUs",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    main()
