"""Benchmark plugin discovery and CLI start-up against baselines measured in the same run.

Creates N synthetic plugin distributions (default 200) whose run modules sleep
on import (standing in for torch and friends), then times, interleaved and
repeated, the median wall time of:

  baseline        a bare script: entry_points(group=...), ep.load()(), json.dumps
  list --json     mdivicom plugins list --json
  python -c pass  the interpreter alone
  --help          mdivicom --help
  info REF        mdivicom plugins info REF --json (fast path, one entry point)

Targets (issue 2): list --json <= 1.5 x baseline; --help <= 2 x (python -c pass) + 60 ms.
The plugin site is byte-compiled first, as pip leaves an installed package (with
PYTHONDONTWRITEBYTECODE set, as on our machines, nothing else would compile it and
every start would compile 400 modules, the baseline's too); `--source-only` leaves
it uncompiled, as this script measured before 2026-11-29.
There is no discovery cache, so there is no cold/warm distinction to report.
`--clock cpu` times the CPU each process used (user + system) instead of the
wall clock: on a machine shared with other work, a 100-ms command's wall time
mostly measures the neighbours. `--clock instructions` counts the instructions
each process executed (valgrind's callgrind), which no load moves: one run is
enough, and two versions compare to a fraction of a percent. `--compare-code`
lists a second time with another checkout's src first on PYTHONPATH.

Usage: python benchmarks/discovery.py [--plugins 200] [--runs 7]
       [--clock wall|cpu|instructions] [--source-only] [--compare-code PYTHONPATH]
       [--markdown]
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    at_least,
    cpu_timed,
    end_on_sigterm,
    instructions,
    measure,
    medians,
    not_negative,
    print_table,
    run_main,
    timed,
)

LIST = "mdivicom plugins list --json"
LIST_OTHER = "the same, --compare-code"
INFO = "mdivicom plugins info REF --json"
CLOCKS = {"wall": timed, "cpu": cpu_timed, "instructions": instructions}
#: `mdivicom` as its console script starts it, from whatever PYTHONPATH puts first
AS_MDIVICOM = "import sys; sys.argv[0] = 'mdivicom'; from mdivicomtools.cli import main; main()"

BASELINE = """
import importlib.metadata, json
plugins = [ep.load()() for ep in importlib.metadata.entry_points(group="mdivicomtools.plugins")]
json.dumps(plugins)
"""


def make_site(root: Path, count: int, import_delay_s: float) -> None:
    for index in range(count):
        pkg = f"bench_plugin_{index:03}"
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
        (root / pkg / "plugin.py").write_text(
            "def get_plugin():\n"
            "    return {'meta': {'api_version': 'mdivicomtools.plugin.v0.1',"
            f" 'id': 'bench-{index:03}', 'kind': 'python', 'version': '1.0.{index}',"
            f" 'description': 'Synthetic plugin {index}', 'publisher': 'bench',"
            " 'config_schema': {'type': 'object', 'properties': {'x': {'type': 'number'}}}},"
            f" 'entry': {{'callable': '{pkg}.run:run'}}}}\n"
        )
        (root / pkg / "run.py").write_text(
            f"import time\ntime.sleep({import_delay_s})\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    return None\n"
        )
        dist = root / f"bench_plugin_{index:03}-1.0.{index}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: bench-plugin-{index:03}\nVersion: 1.0.{index}\n"
        )
        (dist / "entry_points.txt").write_text(
            f"[mdivicomtools.plugins]\nbench-{index:03} = {pkg}.plugin:get_plugin\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plugins", type=at_least(1), default=200, help="plugin distributions (default 200)"
    )
    parser.add_argument(
        "--runs", type=at_least(1), default=7, help="timed rounds after an untimed one (default 7)"
    )
    parser.add_argument(
        "--import-delay",
        type=not_negative,
        default=0.2,
        help="seconds each run module sleeps on import (default 0.2)",
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="what is measured: elapsed time, the CPU each process used (user + system), "
        "or the instructions it executed (valgrind; about 30x slower, unmoved by load; "
        "default wall)",
    )
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="leave the plugin site's modules uncompiled (compiled on every start)",
    )
    parser.add_argument(
        "--compare-code",
        metavar="PYTHONPATH",
        help="also list with this PYTHONPATH first (an older checkout's src, byte-compiled "
        "here first), interleaved in the same rounds",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    end_on_sigterm()

    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        site = Path(tmp) / "site"
        make_site(site, args.plugins, args.import_delay)
        if not args.source_only:
            compileall.compile_dir(site, quiet=1)
        env = dict(os.environ, PYTHONPATH=str(site), MDIVICOM_PLUGIN_PATH="")
        wanted = f"bench-{args.plugins // 2:03}"  # one of the middle, whatever --plugins is
        cases = {
            "baseline (bare script)": partial(clock, [sys.executable, "-c", BASELINE], env),
            LIST: partial(clock, [mdivicom, "plugins", "list", "--json"], env),
            "python -c pass": partial(clock, [sys.executable, "-c", "pass"], env),
            "mdivicom --help": partial(clock, [mdivicom, "--help"], env),
            INFO: partial(clock, [mdivicom, "plugins", "info", wanted, "--json"], env),
        }
        if args.compare_code:
            for folder in args.compare_code.split(os.pathsep):
                compileall.compile_dir(folder, quiet=1)
            other = dict(env, PYTHONPATH=os.pathsep.join([args.compare_code, str(site)]))
            argv = [sys.executable, "-c", AS_MDIVICOM, "plugins", "list", "--json"]
            cases[LIST_OTHER] = partial(clock, argv, other)
        samples = measure(cases, args.runs)
    med = medians(samples)
    base, bare = med["baseline (bare script)"], med["python -c pass"]
    rows = [
        ("baseline (bare script)", base, "1.00x baseline", ""),
        (LIST, med[LIST], f"{med[LIST] / base:.2f}x baseline", "<= 1.50x baseline"),
    ]
    if LIST_OTHER in med:
        rows.append((LIST_OTHER, med[LIST_OTHER], f"{med[LIST_OTHER] / base:.2f}x baseline", ""))
    help_target = (
        f"<= 2x python -c pass + 60 ms = {(2 * bare + 0.060) * 1000:.0f} ms"
        if args.clock != "instructions"
        else "(a time: see --clock cpu)"
    )
    rows += [
        (INFO, med[INFO], f"{med[INFO] / base:.2f}x baseline", ""),
        ("python -c pass", bare, "", ""),
        (
            "mdivicom --help",
            med["mdivicom --help"],
            f"{med['mdivicom --help'] / bare:.1f}x python -c pass",
            help_target,
        ),
    ]
    what = "instructions" if args.clock == "instructions" else f"{args.clock} time"
    print_table(
        f"# discovery: {args.plugins} plugins, run modules sleep {args.import_delay}s on "
        f"import ({'source only' if args.source_only else 'compiled'}); median of {args.runs} "
        f"runs; {what}; Python {sys.version.split()[0]}",
        [(name, _shown(value, args.clock), ratio, target) for name, value, ratio, target in rows],
        args.markdown,
    )


def _shown(value: float, clock: str) -> str:
    return f"{value / 1e6:.1f} M" if clock == "instructions" else f"{value * 1000:.0f} ms"


if __name__ == "__main__":
    run_main(main)
