"""Benchmark: what isolating python plugins by default would cost.

Ways to run a no-op python plugin, measured in the same run, interleaved,
medians: in-process (the default, under the `mdivicom` supervisor), in-process
without the supervisor (`MDIVICOM_SUPERVISOR=0`: what `mdivicom run` did before
it), `--isolate` (a fresh child interpreter that imports mdivicomtools and the
plugin), and, inside one process that has done its imports, calling the plugin
directly against forking a child that calls it (what a fork-based isolation
would pay per run).

Usage: python benchmarks/isolation.py [--runs 15] [--markdown]
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
from _common import (
    at_least,
    end_on_sigterm,
    measure,
    medians,
    noop_plugin_site,
    print_table,
    run_main,
    signed_ms,
    timed,
)

#: the in-process rows cost microseconds each: never fewer runs than this
FORK_RUNS = 50


def fork_costs(runs: int) -> tuple[float, float]:
    """(direct call, fork + call + exit + wait) in this process, after the imports."""
    import mdivicomtools.runner  # noqa: F401 - the imports a runner has done

    def noop() -> None:
        return None

    direct: list[float] = []
    forked: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        noop()
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            noop()
            os._exit(0)
        os.waitpid(pid, 0)
        forked.append(time.perf_counter() - start)
    return statistics.median(direct), statistics.median(forked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=at_least(1), default=15)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    end_on_sigterm()
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        env = noop_plugin_site(root)
        dataset = root / "dataset"
        dataset.mkdir()
        (dataset / "a.txt").write_text("x")
        counter = iter(range(10_000))

        unsupervised = {**env, "MDIVICOM_SUPERVISOR": "0"}

        def run(*extra: str, environ: dict[str, str] = env) -> float:
            out = root / f"out-{next(counter)}"
            argv = [mdivicom, "run", "noop", "--dataset", str(dataset), "--out", str(out)]
            return timed([*argv, *extra], environ)

        cases = {
            "in-process": lambda: run(),
            "no supervisor": lambda: run(environ=unsupervised),
            "--isolate": lambda: run("--isolate"),
        }
        samples = measure(cases, args.runs)
    med = medians(samples)
    fork_runs = max(args.runs, FORK_RUNS)
    direct, forked = fork_costs(fork_runs)
    base = med["in-process"]
    bare = med["no supervisor"]
    rows = [
        ("mdivicom run noop (in-process)", f"{base * 1000:.0f} ms", "baseline", ""),
        (
            "the same, MDIVICOM_SUPERVISOR=0",
            f"{bare * 1000:.0f} ms",
            f"{base / bare:.3f}x: the supervisor costs {signed_ms(base - bare)}",
            "what the crash supervisor costs a run",
        ),
        (
            "mdivicom run noop --isolate",
            f"{med['--isolate'] * 1000:.0f} ms",
            f"{signed_ms(med['--isolate'] - base)} over in-process",
            "",
        ),
        ("direct call, after the imports", f"{direct * 1e6:.0f} us", "", ""),
        (
            "fork + call + exit + wait, after the imports",
            f"{forked * 1000:.1f} ms",
            f"+{(forked - direct) * 1000:.1f} ms per run",
            "what fork-based isolation would add",
        ),
    ]
    print_table(
        f"# isolation: no-op python plugin; median of {args.runs} runs "
        f"({fork_runs} for the calls after the imports); Python {sys.version.split()[0]}",
        rows,
        args.markdown,
    )


if __name__ == "__main__":
    run_main(main)
