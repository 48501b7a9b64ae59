"""Benchmark: output inventory throughput against `sha256sum` over the same files.

Writes N files (default 64 x 16 MiB = 1 GiB) of random data, then times,
interleaved and repeated, `sha256sum` over all of them (the baseline) and
`mdivicomtools.records.inventory.inventory()` over the folder (in a fresh interpreter
each time, so both pay start-up). The page cache is warm for both after the
untimed first round, so this compares hashing, not the disk.

Target (issue 3): inventory throughput >= 1.0 x sha256sum's.

Usage: python benchmarks/inventory.py [--files 64] [--mib 16] [--runs 5] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    at_least,
    end_on_sigterm,
    measure,
    medians,
    print_table,
    run_main,
    timed,
    usable_cpus,
)

INVENTORY = """
import sys
from pathlib import Path
from mdivicomtools.records.inventory import inventory
inventory(Path(sys.argv[1]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=at_least(1), default=64)
    parser.add_argument("--mib", type=at_least(1), default=16)
    parser.add_argument("--runs", type=at_least(1), default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    end_on_sigterm()
    total_mib = args.files * args.mib
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp) / "outputs"
        root.mkdir()
        block = os.urandom(1 << 20)
        for index in range(args.files):
            with (root / f"video-{index:03}.bin").open("wb") as handle:
                for chunk in range(args.mib):
                    handle.write(block[chunk:] + block[:chunk])
        files = sorted(str(p) for p in root.iterdir())
        cases = {
            "sha256sum (coreutils)": ["sha256sum", *files],
            "mdivicomtools inventory()": [sys.executable, "-c", INVENTORY, str(root)],
        }
        samples = measure({name: partial(timed, argv) for name, argv in cases.items()}, args.runs)
    med = medians(samples)
    base = med["sha256sum (coreutils)"]
    rows = []
    for name, seconds in med.items():
        rate = total_mib / seconds
        ratio = f"{base / seconds:.2f}x sha256sum's throughput"
        rows.append((name, f"{rate:.0f} MiB/s", ratio, "" if name.startswith("sha") else ">= 1.0x"))
    print_table(
        f"# inventory: {args.files} files x {args.mib} MiB = {total_mib} MiB; median of "
        f"{args.runs} runs; {usable_cpus()} CPUs",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    run_main(main)
