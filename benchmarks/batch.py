"""Benchmark: batches on the local, Dask and Slurm executors, of containers, and their walks.

1. 16 sessions of a CPU-bound python plugin (about 0.5 s each, calibrated in
   this run): `--jobs 1` is the baseline; `--jobs 2` (target >= 1.8x faster on
   2 cores) and `--executor dask --jobs 2` (a LocalCluster of 2 single-threaded
   worker processes; target >= 1.7x).
2. Scheduling overhead of the local executor: 16 no-op sessions against 1,
   with `--jobs 1`; the marginal wall time per session minus what one no-op
   run costs in-process (measured here too, median of 5). Target <= 50 ms.
3. --parts slurm: the same CPU-bound sessions on `--executor slurm --jobs 2`
   against the local `--jobs 1`, and the worker jobs' start-up. Target >= 1.5x.
4. --parts containers: `--jobs 2` of a tiny container plugin on each engine
   against `xargs -P 2` of the engine's own CLI with the same mounts, network
   and user, and a sequential loop of it. Target <= 1.0x xargs' time.
5. --parts walks: what --resume costs a batch whose sessions all run again
   (every session's input changed), in CPU time (user + system, the batch's
   workers included), against the same batch without --resume, on sessions of
   --files small files each; and that difference in bare stat walks of every
   session (timed in-process), which is what one more walk of each session
   costs. Also the resumed batch that skips every session. With
   --compare-code, the resumed batch also with an older checkout's src first
   on PYTHONPATH, interleaved in the same rounds.

Every case runs once untimed first, then the cases take turns, --runs rounds.

Usage: python benchmarks/batch.py [--runs 3] [--sessions 16] [--markdown]
           [--parts local,slurm,containers,walks] [--files 4000]
           [--compare-code PYTHONPATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import (
    at_least,
    cpu_timed,
    end_on_sigterm,
    measure,
    podman_remote_cli,
    print_table,
    run_main,
    signed_ms,
    speed_ratio,
    timed,
    usable_cpus,
)
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


PARTS = ("local", "slurm", "containers", "walks")
#: what --parts runs unless told: walks measures one change, not the executors
DEFAULT_PARTS = "local,slurm,containers"


def part_list(text: str) -> list[str]:
    """--parts: some of PARTS, comma-separated (a misspelt one would run nothing)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"{text!r}: name one or more of {', '.join(PARTS)}, comma-separated"
        )
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=at_least(1), default=3, help="timed rounds, for medians (default: 3)"
    )
    # the scheduling overhead is the marginal time of a session: 2 at least
    parser.add_argument(
        "--sessions", type=at_least(2), default=16, help="sessions per batch (default: 16)"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument(
        "--parts",
        type=part_list,
        default=DEFAULT_PARTS,
        help=f"comma-separated, of: {', '.join(PARTS)} (default: {DEFAULT_PARTS})",
    )
    parser.add_argument(
        "--files",
        type=at_least(1),
        default=4000,
        help="--parts walks: small files in each session, in folders of 100 (default: 4000)",
    )
    parser.add_argument(
        "--compare-code",
        metavar="PYTHONPATH",
        help="--parts walks: also time the resumed batch with this PYTHONPATH first (e.g. "
        "an older checkout's src folders), interleaved in the same rounds",
    )
    args = parser.parse_args()
    end_on_sigterm()
    parts = set(args.parts)
    if "local" in parts:
        local_part(args)
    if "slurm" in parts:
        slurm_part(args)
    if "containers" in parts:
        for engine in ("docker", "podman"):
            container_part(args, engine)
    if "walks" in parts:
        walks_part(args)


def local_part(args: argparse.Namespace) -> None:
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
        samples = measure(cases, args.runs)
        sys.path.insert(0, str(root / "site"))
        from mdivicomtools.runner import run_plugin

        def in_process() -> float:
            start = time.perf_counter()
            out = root / f"inproc-{next(counter)}"
            run_plugin("noop", dataset=dataset / "sessions" / "ses-01", out=out)
            return time.perf_counter() - start

        run_cost = statistics.median(measure({"in-process": in_process}, 5)["in-process"])
    med = {name: statistics.median(values) for name, values in samples.items()}
    one = med["--jobs 1"]
    marginal = (med["noop x16 --jobs 1"] - med["noop x1 --jobs 1"]) / (args.sessions - 1)
    rows = [
        (f"{args.sessions} x burn, --jobs 1", f"{one:.2f} s", "baseline", ""),
        (
            f"{args.sessions} x burn, --jobs 2",
            f"{med['--jobs 2']:.2f} s",
            speed_ratio(one, med["--jobs 2"]),
            ">= 1.8x",
        ),
        (
            f"{args.sessions} x burn, dask 2 workers",
            f"{med['--executor dask --jobs 2']:.2f} s",
            speed_ratio(one, med["--executor dask --jobs 2"]),
            ">= 1.7x",
        ),
        ("marginal wall time per no-op session", f"{marginal * 1000:.0f} ms", "", ""),
        ("one no-op run in-process", f"{run_cost * 1000:.0f} ms", "", ""),
        (
            "local scheduling overhead per session",
            signed_ms(marginal - run_cost),
            "",
            "<= 50 ms",
        ),
    ]
    print_table(
        f"# batch: {args.sessions} sessions, burn ~0.5 s each (n={n}); median of "
        f"{args.runs} runs; {usable_cpus()} CPUs",
        rows,
        args.markdown,
    )

    print()


SLURM_CONFIG = '[slurm]\ninterface = "lo"\ntime = "00:20:00"\nmem = "1GB"\n'


def slurm_part(args: argparse.Namespace) -> None:
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    n = calibrate(0.5)
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        make_site(root / "site")
        dataset = make_dataset(root / "study", sessions=args.sessions)
        (root / "config.toml").write_text(SLURM_CONFIG)
        env = dict(
            os.environ,
            PYTHONPATH=str(root / "site"),
            MDIVICOM_PLUGIN_PATH="",
            MDIVICOM_CONFIG_FILE=str(root / "config.toml"),
        )
        counter = iter(range(100_000))

        def batch(plugin: str, *extra: str) -> float:
            out = root / f"out-{next(counter)}"
            command = [mdivicom, "run", plugin, "--dataset", str(dataset), "--out", str(out)]
            return timed([*command, "--sessions", "ses-*", "--set", f"n={n}", *extra], env)

        one = ("--sessions", "ses-01")
        cases = {
            "local 1": lambda: batch("burn", "--jobs", "1"),
            "slurm 2": lambda: batch("burn", "--executor", "slurm", "--jobs", "2"),
            "noop slurm": lambda: batch("noop", "--executor", "slurm", "--jobs", "1", *one),
            "noop local": lambda: batch("noop", "--jobs", "1", *one),
        }
        samples = measure(cases, args.runs)
    med = {name: statistics.median(values) for name, values in samples.items()}
    startup = med["noop slurm"] - med["noop local"]
    rows = [
        (f"{args.sessions} x burn, local --jobs 1", f"{med['local 1']:.2f} s", "baseline", ""),
        (
            f"{args.sessions} x burn, slurm 2 worker jobs",
            f"{med['slurm 2']:.2f} s",
            speed_ratio(med["local 1"], med["slurm 2"]),
            ">= 1.5x",
        ),
        ("slurm start-up (1 no-op session, minus local)", f"{startup:.2f} s", "", ""),
        (
            f"{args.sessions} x burn, slurm 2 workers without start-up",
            f"{med['slurm 2'] - startup:.2f} s",
            speed_ratio(med["local 1"], med["slurm 2"] - startup),
            "",
        ),
    ]
    print_table(
        f"# batch on Slurm: {args.sessions} sessions, burn ~0.5 s each (n={n}); median of "
        f"{args.runs} runs; {usable_cpus()} CPUs, one Slurm node",
        rows,
        args.markdown,
    )
    print()


def stat_walk(folder: Path) -> None:
    """A bare lstat walk of folder, the floor of any walk of a dataset."""
    with os.scandir(folder) as entries:
        for entry in entries:
            entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                stat_walk(Path(entry.path))


def walks_part(args: argparse.Namespace) -> None:
    """--resume over sessions whose input changed, against the same batch without it."""
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        make_site(root / "site")
        dataset = make_dataset(root / "study", sessions=args.sessions)
        folders = sorted((dataset / "sessions").iterdir())
        for folder in folders:
            for i in range(args.files):
                sub = folder / "frames" / f"{i // 100:03d}"
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"{i:05d}.txt").write_text(str(i))
        env = dict(os.environ, PYTHONPATH=str(root / "site"), MDIVICOM_PLUGIN_PATH="")
        env["MDIVICOM_DIGEST_CACHE"] = str(root / "digests.sqlite")
        touched = iter(range(1, 100_000))

        def batch(out: str, *extra: str, code: str | None = None) -> float:
            command = [mdivicom, "run", "noop", "--dataset", str(dataset), "--out"]
            run_env = env if code is None else dict(env, PYTHONPATH=f"{code}:{env['PYTHONPATH']}")
            command += [str(root / out), "--sessions", "ses-*", *extra]
            return cpu_timed(command, run_env)

        def changed(out: str = "resumed", code: str | None = None) -> float:
            # a new mtime on one file of every session: each runs again
            stamp = time.time() + next(touched)
            for folder in folders:
                os.utime(folder / "frames" / "000" / "00000.txt", (stamp, stamp))
            return batch(out, "--jobs", "1", "--resume", code=code)

        def walk() -> float:
            start = time.process_time()
            for folder in folders:
                stat_walk(folder)
            return time.process_time() - start

        cases = {
            "plain": lambda: batch("plain", "--jobs", "1", "--overwrite"),
            "changed": changed,
            "unchanged": lambda: batch("resumed", "--jobs", "1", "--resume"),
            "walk": walk,
        }
        if args.compare_code:
            cases["changed, other"] = lambda: changed("resumed-other", args.compare_code)
        samples = measure(cases, args.runs)
    med = {name: statistics.median(values) for name, values in samples.items()}
    plain = med["plain"]
    rows = [
        (f"{args.sessions} sessions, --overwrite", f"CPU {plain:.2f} s", "baseline", ""),
        (
            f"{args.sessions} sessions, --resume, every input changed",
            f"CPU {med['changed']:.2f} s",
            f"{med['changed'] / plain:.2f}x the baseline's CPU time",
            "",
        ),
        (
            f"{args.sessions} sessions, --resume, all skipped",
            f"CPU {med['unchanged']:.2f} s",
            f"{med['unchanged'] / plain:.2f}x the baseline's CPU time",
            "",
        ),
        ("bare stat walk of every session, in-process", f"CPU {med['walk']:.3f} s", "", ""),
        (
            "--resume's extra over the baseline, in bare walks",
            f"{(med['changed'] - plain) / med['walk']:.2f} walks",
            "",
            "",
        ),
    ]
    if args.compare_code:
        other = med["changed, other"]
        rows[2:2] = [
            (
                "the same, with --compare-code",
                f"CPU {other:.2f} s",
                f"{other / plain:.2f}x the baseline's CPU time; "
                f"{(other - plain) / med['walk']:.2f} walks over it",
                "",
            )
        ]
    print_table(
        f"# batch walks: {args.sessions} sessions of {args.files} files, no-op plugin, "
        f"--jobs 1; median of {args.runs} runs; {usable_cpus()} CPUs",
        rows,
        args.markdown,
    )
    print()


IMAGE = "localhost/mdivicom-test:1"
COUNT = "find {d} -name '*.wav' | wc -l > {o}/n"


def engine_cli(engine: str) -> list[str]:
    """The raw CLI, talking to the engine the backend of that name uses."""
    return ["docker"] if engine == "docker" else podman_remote_cli()


def container_part(args: argparse.Namespace, engine: str) -> None:
    """`--jobs 2` of mdivicom against xargs -P 2 of the raw engine CLI, same mounts."""
    if shutil.which(engine) is None:
        raise SystemExit(
            f"{engine} is not on PATH: --parts containers compares against its CLI "
            "(scripts/setup-engines.sh); leave the part out with --parts local,slurm"
        )
    cli = engine_cli(engine)
    mdivicom = str(Path(sys.executable).with_name("mdivicom"))
    with tempfile.TemporaryDirectory(prefix="mdivicom-bench-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root / "study", sessions=args.sessions)
        (root / "manifests").mkdir()
        (root / "manifests" / "count.json").write_text(
            json.dumps(
                {
                    "meta": {
                        "api_version": "mdivicomtools.plugin.v0.1",
                        "id": "count-wavs",
                        "kind": "container",
                        "version": "1.0.0",
                        "publisher": "bench",
                        "description": "count a session's WAV files",
                    },
                    "container": {
                        "image": IMAGE,
                        "pull": "never",
                        "command": [
                            "sh",
                            "-c",
                            COUNT.format(d="{dataset_dir}", o="{out_dir}"),
                        ],
                    },
                }
            )
        )
        env = dict(os.environ, MDIVICOM_PLUGIN_PATH=str(root / "manifests"))
        sessions = sorted(p.name for p in (dataset / "sessions").iterdir())
        counter = iter(range(100_000))

        def mdivicom_batch() -> float:
            out = root / f"out-{next(counter)}"
            return timed(
                [
                    mdivicom,
                    "run",
                    "count-wavs",
                    "--dataset",
                    str(dataset),
                    "--out",
                    str(out),
                    "--sessions",
                    "ses-*",
                    "--jobs",
                    "2",
                    "--backend",
                    engine,
                ],
                env,
            )

        def raw(parallel: int) -> float:
            # what mdivicom's plan mounts: the dataset read-only, out, work and config
            out = root / f"raw-{next(counter)}"
            lines = []
            for session in sessions:
                folder = out / session
                for sub in ("out", "work/.tmp"):
                    (folder / sub).mkdir(parents=True)
                (folder / "config.json").write_text("{}")
                command = [
                    *cli,
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--user",  # mdivicom's plan runs the container as the caller
                    f"{os.getuid()}:{os.getgid()}",
                    "-v",
                    f"{dataset / 'sessions' / session}:/mdivicom/dataset:ro",
                    "-v",
                    f"{folder / 'out'}:/mdivicom/out",
                    "-v",
                    f"{folder / 'work'}:/mdivicom/work",
                    "-v",
                    f"{folder / 'config.json'}:/mdivicom/config.json:ro",
                    "-e",
                    "HOME=/mdivicom/work",
                    "-e",
                    "MDIVICOM_CONFIG=/mdivicom/config.json",
                    IMAGE,
                    "sh",
                    "-c",
                    COUNT.format(d="/mdivicom/dataset", o="/mdivicom/out"),
                ]
                script = folder / "run.sh"
                script.write_text(shlex.join(command) + "\n")
                lines.append(str(script))
            listing = out / "scripts.txt"
            listing.write_text("\n".join(lines) + "\n")
            return timed(
                ["sh", "-c", f"xargs -P {parallel} -n 1 sh < {shlex.quote(str(listing))}"], env
            )

        cases = {
            "mdivicom": mdivicom_batch,
            "xargs 2": lambda: raw(2),
            "loop": lambda: raw(1),
        }
        samples = measure(cases, args.runs)
    med = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        (f"{engine} run in a loop (sequential)", f"{med['loop']:.2f} s", "", ""),
        (
            f"xargs -P 2 {engine} run",
            f"{med['xargs 2']:.2f} s",
            f"baseline; {med['loop'] / med['xargs 2']:.2f}x faster than the loop",
            "",
        ),
        (
            f"mdivicom --jobs 2 --backend {engine}",
            f"{med['mdivicom']:.2f} s",
            f"{med['mdivicom'] / med['xargs 2']:.2f}x xargs' time",
            "<= 1.0x",
        ),
    ]
    print_table(
        f"# batch of containers on {engine}: {args.sessions} sessions; median of "
        f"{args.runs} runs; {usable_cpus()} CPUs",
        rows,
        args.markdown,
    )
    print()


if __name__ == "__main__":
    run_main(main)
