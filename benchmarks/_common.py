"""Shared helpers for the benchmark scripts: timing subprocesses and printing tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one subprocess; a failure ends the benchmark with its stderr."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{list(argv)} failed: {result.stderr.decode()[-2000:]}")
    return elapsed


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(title: str, rows: list[tuple[str, str, str, str]], markdown: bool) -> None:
    """rows: (case, value, ratio, target)."""
    print(title)
    if markdown:
        print("| case | median | ratio | target |\n|---|---:|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for case, value, ratio, target in rows:
            print(f"{case:<40} {value:>12}  {ratio:<36} {target}")


NOOP_PLUGIN = """
def get_plugin():
    return {"meta": {"api_version": "mdivicomtools.plugin.v0.1", "id": "noop",
                     "kind": "python", "version": "1.0.0", "description": "Does nothing.",
                     "publisher": "bench"},
            "entry": {"callable": "bench_noop.run:run"}}
"""
NOOP_RUN = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return None
"""


def noop_plugin_site(root: Path) -> dict[str, str]:
    """An installed-looking no-op plugin `noop` under root/site; the environment that sees it.

    The benchmarks of run overhead and isolation measure the runner, so the
    plugin they run does nothing and is installed as pip would (a dist-info
    with an entry point), not registered in-process.
    """
    pkg = root / "site" / "bench_noop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(NOOP_PLUGIN)
    (pkg / "run.py").write_text(NOOP_RUN)
    dist = root / "site" / "bench_noop-1.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-noop\nVersion: 1.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[mdivicomtools.plugins]\nnoop = bench_noop.plugin:get_plugin\n"
    )
    return dict(os.environ, PYTHONPATH=str(root / "site"), MDIVICOM_PLUGIN_PATH="")
