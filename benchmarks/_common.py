"""Shared helpers for the benchmark scripts: timing subprocesses and printing tables."""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for a count: a median of 0 runs, or of -1 files, is no benchmark,
    and would otherwise end in a traceback after minutes of work."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type for a length or size (minutes, seconds, MiB) that must be above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def not_negative(text: str) -> float:
    """An argparse type for a length that may be 0 but not below (discovery.py's
    --import-delay: a title saying "sleep -1.0s" or "sleep nans" measured nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def usable_cpus() -> int:
    """The CPUs this process may run on (what `taskset` or a batch job's cgroup leaves
    it), for a table's title: os.cpu_count() counts the machine's, so a benchmark
    pinned to one core said "2 CPUs" over one core's numbers."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def end_on_sigterm() -> None:
    """Let SIGTERM (a CI timeout, `timeout`, a cancelled job) end the benchmark as
    Ctrl-C does, through its `with` blocks and `finally`s: its temporary folders
    (gigabytes for the hashing benchmarks) are removed and the command it was
    timing is stopped, instead of both being left behind."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


#: the exit status when the reader of stdout went away (128 + SIGPIPE), as for `mdivicom`
#: itself and the shell's own tools (docs/reference/exit-codes.md)
EXIT_BROKEN_PIPE = 141


def run_main(main: Callable[[], int | None]) -> None:
    """Run a benchmark script's main() and exit with its status.

    A reader that goes away (`benchmarks/NAME.py | head -3`, a closed terminal)
    ends the benchmark quietly with 141, as it does `mdivicom`: no traceback
    from print(), and no second one from the interpreter's final flush. The
    benchmark stops there, through its `with` blocks and `finally`s, so its
    temporary folders are removed; nobody reads the tables it would still print.
    """
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(status)


def podman_remote_cli() -> list[str]:
    """`podman --remote` to the API service the podman backend uses: CONTAINER_HOST
    when set, else the first of its sockets that is there (the backend's own order).

    The baselines used the rootful socket whatever CONTAINER_HOST said, so they
    could time another service than the mdivicom run they were compared with.
    """
    from mdivicomtools_podman.engine import candidate_endpoints

    endpoints = candidate_endpoints()
    if os.environ.get("CONTAINER_HOST"):
        return ["podman", "--remote", "--url", endpoints[0]]
    for endpoint in endpoints:
        if Path(endpoint.removeprefix("unix://")).is_socket():
            return ["podman", "--remote", "--url", endpoint]
    raise SystemExit(
        f"no Podman service listens at {' or '.join(endpoints)}: the benchmark compares "
        "against `podman --remote` to the service mdivicom uses (scripts/setup-engines.sh)"
    )


def require_sync_audio() -> None:
    """sync_memory.py and sync_chapters.py run sync-audio in the Python that runs them.
    Without it they wrote minutes of audio (679 MiB for sync_memory.py's two hours)
    before failing, or ended in an import traceback even for --help: say so at once."""
    import importlib.util

    if importlib.util.find_spec("mdivicom_sync_audio") is None:
        raise SystemExit(
            f"sync-audio is not installed in {sys.executable}, and this benchmark runs it: "
            "run it with a Python that has mdivicomtools and examples/sync-audio installed "
            "(the development .venv has no sync-audio; docs/performance.md)"
        )


#: how long a timed command that is being stopped gets to clean up (a container run
#: removes its container, a batch its workers) before it is killed
STOP_GRACE_S = 30


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one subprocess; a failure ends the benchmark with its stderr."""
    return timed_peak(argv, env)[0]


def timed_peak(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall time, CPU seconds (user + system) and peak resident memory (KiB) of one
    subprocess; a failure ends the benchmark with its stderr, and a stop of the
    benchmark stops the command too.

    Both are that process's own (`wait4`), not the sum or the largest of every
    child this benchmark reaped so far, which RUSAGE_CHILDREN would give."""
    start = time.perf_counter()
    try:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as error:  # the engine's CLI (or sha256sum) is not installed
        raise SystemExit(f"cannot run {argv[0]}: {error.strerror}") from None
    try:
        assert process.stderr is not None
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:  # the benchmark is being stopped: so is the command, politely
        process.terminate()
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{list(argv)} failed: {stderr.decode()[-2000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def cpu_timed(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """CPU seconds (user + system) of one subprocess, as `timed`.

    On a shared machine the wall time of a 100-ms command mostly measures the
    neighbours; the CPU it used moves much less with their load."""
    return timed_peak(argv, env)[1]


def instructions(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Instructions one subprocess executed, counted by valgrind's callgrind.

    Neither the machine's load nor its clock speed changes the count, so on a
    shared machine two versions of a command compare to a fraction of a percent
    where their CPU times move by a tenth. The command runs about 30 times
    slower, and the count is work done, not time: a cache miss or a system
    call's wait counts as little as any instruction."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--clock instructions needs valgrind (Debian: apt-get install valgrind)")
    counted = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    result = subprocess.run(counted, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = result.stderr.decode(errors="replace")
    found = re.search(r"Collected : (\d+)", stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{list(argv)} failed under valgrind: {stderr[-2000:]}")
    return float(found.group(1))


#: what every timed `mdivicom` process imports: their byte-code decides its start-up
STARTUP_MODULES = ("mdivicomtools", "click", "msgspec", "pluggy")


def without_bytecode(modules: Sequence[str] | None = None) -> list[str]:
    """Those of `modules` (STARTUP_MODULES by default) that the processes a benchmark
    starts will compile on every start: a module of theirs (a package's, any of its
    files) with no byte-code beside it, or byte-code older than its source, while
    PYTHONDONTWRITEBYTECODE is set, so the untimed first round cannot write it. An
    editable install has none until something writes it, and uv installs without
    it: there, discovery.py measured `plugins list --json` at 2.4x its baseline
    against 1.6x with byte-code. A checkout's files changed since it was compiled
    (a `git pull`) are as slow, and counted 60 M more instructions for `--help`."""
    import importlib.util

    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return []
    missing = []
    for name in STARTUP_MODULES if modules is None else modules:
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        folders = spec.submodule_search_locations
        sources = (
            [path for folder in folders for path in Path(folder).rglob("*.py")]
            if folders
            else [Path(spec.origin)]
        )
        if any(_compiles_on_start(source) for source in sources):
            missing.append(name)
    return missing


def _compiles_on_start(source: Path) -> bool:
    import importlib.util

    cached = Path(importlib.util.cache_from_source(str(source)))
    try:
        return cached.stat().st_mtime < source.stat().st_mtime
    except FileNotFoundError:
        return True


@functools.cache
def note_missing_bytecode() -> None:
    """Once per benchmark (batch.py measures several parts), on stderr."""
    missing = without_bytecode()
    if missing:
        print(
            f"note: no byte-code (or older than its source) for {', '.join(missing)} and "
            "PYTHONDONTWRITEBYTECODE is "
            "set: every process started here compiles them, which inflates start-up times; "
            "compile first (`python -m compileall -q src backends/*/src`, and the venv's "
            "site-packages; scripts/test.sh does both)",
            file=sys.stderr,
        )


def measure(cases: Mapping[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """Each case once untimed (page cache, byte-code, the engine's first start), then
    `runs` rounds of every case in turn, so that a change in the machine's load
    falls on all cases alike. A case returns the seconds it measured."""
    note_missing_bytecode()
    for case in cases.values():
        case()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            samples[name].append(case())
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def signed_ms(seconds: float) -> str:
    """A difference in milliseconds with its sign (`+12 ms`, `-3 ms`; never `+-3 ms`)."""
    return f"{round(seconds * 1000):+d} ms"


def speed_ratio(baseline: float, other: float) -> str:
    """How many times faster `other` ran than the baseline, or slower: a ratio under 1
    printed as "0.53x faster" reads as faster. A time that is not above 0 (a start-up
    subtracted from a batch that took less) has no ratio, rather than a traceback."""
    if not other > 0:
        return "no ratio (not above 0 s)"
    ratio = baseline / other
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


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
