"""Shared helpers for the benchmark scripts: timing subprocesses and printing tables."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence


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
