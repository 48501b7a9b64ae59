"""benchmarks/_common.py: what every benchmark script's arguments, timing and ratios rest on.

A benchmark that takes minutes must refuse a count it cannot use before it
starts, say in one line that a command is missing, and give every case the
same warm-up and the same share of the machine's load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from _common import at_least, measure, not_negative, positive, signed_ms, speed_ratio, timed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--runs", type=at_least(1), default=3)
    parser.add_argument("--files", type=at_least(0), default=20)
    parser.add_argument("--minutes", type=positive, default=2.0)
    parser.add_argument("--delay", type=not_negative, default=0.2)
    return parser


def test_counts_and_sizes_are_parsed() -> None:
    args = _parser().parse_args(["--runs", "5", "--files", "0", "--minutes", "0.5", "--delay", "0"])
    assert (args.runs, args.files, args.minutes, args.delay) == (5, 0, 0.5, 0.0)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--runs", "0"], "argument --runs: must be at least 1, not 0"),
        (["--runs", "-2"], "argument --runs: must be at least 1, not -2"),
        (["--runs", "two"], "argument --runs: not a whole number: 'two'"),
        (["--files", "-1"], "argument --files: must be at least 0, not -1"),
        (["--minutes", "0"], "argument --minutes: must be above 0, not 0"),
        (["--minutes", "nan"], "argument --minutes: must be above 0, not nan"),
        (["--minutes", "soon"], "argument --minutes: not a number: 'soon'"),
        (["--delay", "-1"], "argument --delay: must be 0 or more, not -1"),
        (["--delay", "nan"], "argument --delay: must be 0 or more, not nan"),
    ],
)
def test_a_count_or_size_it_cannot_use_is_one_usage_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"bench: error: {said}"


def test_a_missing_command_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "docker")
    with pytest.raises(SystemExit) as exited:
        timed([missing, "run", "--rm", "busybox"])
    assert exited.value.code == f"cannot run {missing}: No such file or directory"


def test_a_failing_command_ends_the_benchmark_with_its_stderr() -> None:
    with pytest.raises(SystemExit) as exited:
        timed([sys.executable, "-c", "import sys; sys.exit('engine unreachable')"])
    assert "failed: engine unreachable" in str(exited.value.code)


def test_every_case_is_warmed_once_then_the_cases_take_turns() -> None:
    calls: list[str] = []

    def case(name: str, seconds: float):
        def run() -> float:
            calls.append(name)
            return seconds

        return run

    samples = measure({"baseline": case("baseline", 1.0), "ours": case("ours", 2.0)}, 3)
    assert calls == ["baseline", "ours"] * 4  # the first round is the untimed warm-up
    assert samples == {"baseline": [1.0] * 3, "ours": [2.0] * 3}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.089, "+89 ms"), (-0.003, "-3 ms"), (0.0, "+0 ms"), (-0.0004, "+0 ms")],
)
def test_a_difference_shows_one_sign(seconds: float, shown: str) -> None:
    assert signed_ms(seconds) == shown


STOPPED_BENCHMARK = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from _common import end_on_sigterm, timed
end_on_sigterm()
with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
    print(tmp, flush=True)
    timed([sys.executable, "-c", "import time; time.sleep(60)"])
"""


def test_sigterm_removes_the_temporary_folder_and_stops_the_timed_command() -> None:
    """A CI timeout or `timeout` sends SIGTERM: the benchmark's temporary data
    (gigabytes for the hashing benchmarks) must not stay behind, nor the command
    it was timing keep running."""
    import os
    import signal
    import subprocess
    import time

    benchmarks = str(Path(__file__).parents[1] / "benchmarks")
    bench = subprocess.Popen(
        [sys.executable, "-c", STOPPED_BENCHMARK, benchmarks],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bench.stdout is not None
    folder = Path(bench.stdout.readline().strip())
    assert folder.is_dir()
    # the timed command's stdout goes nowhere: find it as the benchmark's child
    deadline = time.monotonic() + 30
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        listing = Path(f"/proc/{bench.pid}/task/{bench.pid}/children")
        children = [int(pid) for pid in listing.read_text().split()]
        time.sleep(0.05)
    assert children, "the timed command did not start"
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(timeout=30) == 128 + signal.SIGTERM
    assert not folder.exists()
    for pid in children:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie is stopped too; anything else still runs
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "Z", f"the timed command {pid} still runs"


def test_a_reader_that_went_away_ends_a_benchmark_with_141_not_a_traceback() -> None:
    """`benchmarks/NAME.py | head -3`: the benchmark stops as `mdivicom` does when its
    reader goes away (exit 141, nothing on stderr), and its temporary folder goes too."""
    import os
    import subprocess
    import tempfile

    script = Path(__file__).parents[1] / "benchmarks" / "discovery.py"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first table is printed
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                [sys.executable, str(script), "--plugins", "1", "--runs", "1"],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ, TMPDIR=tmp),
                timeout=120,
            )
        finally:
            os.close(write_end)
        # nothing but the note on byte-code that measure() may give before it starts
        said = [line for line in done.stderr.splitlines() if not line.startswith("note: ")]
        assert (done.returncode, said) == (141, [])
        assert list(Path(tmp).iterdir()) == []


def test_the_podman_baselines_talk_to_the_service_the_backend_uses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """container_overhead.py and batch.py time `podman --remote run` against mdivicom's
    podman backend, which honours CONTAINER_HOST; the raw CLI was pointed at the
    rootful socket whatever CONTAINER_HOST said, so it could time another service."""
    import batch
    from _common import podman_remote_cli

    elsewhere = f"unix://{tmp_path}/podman.sock"
    monkeypatch.setenv("CONTAINER_HOST", elsewhere)
    assert podman_remote_cli() == ["podman", "--remote", "--url", elsewhere]
    assert batch.engine_cli("podman") == ["podman", "--remote", "--url", elsewhere]


def test_no_podman_service_for_the_baseline_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mdivicomtools_podman import engine

    from _common import podman_remote_cli

    nowhere = [f"unix://{tmp_path}/a.sock", f"unix://{tmp_path}/b.sock"]
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.setattr(engine, "candidate_endpoints", lambda: nowhere)
    with pytest.raises(SystemExit) as exited:
        podman_remote_cli()
    assert str(exited.value.code).startswith(f"no Podman service listens at {nowhere[0]} or ")


def test_timings_that_include_compiling_are_pointed_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With PYTHONDONTWRITEBYTECODE set (as on the project's machines) and an editable
    install without byte-code, every timed `mdivicom` compiled its imports, and
    discovery.py's ratio went from 1.6x to 2.4x without a word."""
    import importlib.util
    import py_compile

    from _common import note_missing_bytecode, without_bytecode

    (tmp_path / "bench_fresh.py").write_text("")
    (tmp_path / "bench_compiled.py").write_text("")
    py_compile.compile(str(tmp_path / "bench_compiled.py"))
    assert Path(importlib.util.cache_from_source(str(tmp_path / "bench_compiled.py"))).exists()
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = ("bench_fresh", "bench_compiled", "bench_not_installed")

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert without_bytecode(modules) == ["bench_fresh"]
    # a source changed after it was compiled (a `git pull` into the checkout) compiles
    # on every start too, as does a package holding one such file
    import os

    package = tmp_path / "bench_pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "sub/changed.py"):
        (package / name).write_text("")
        py_compile.compile(str(package / name))
    assert without_bytecode(("bench_pkg",)) == []
    later = (package / "sub" / "changed.py").stat().st_mtime + 10
    os.utime(package / "sub" / "changed.py", (later, later))
    assert without_bytecode(("bench_pkg", "bench_compiled")) == ["bench_pkg"]
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
    assert without_bytecode(modules) == []  # the untimed first round writes it

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr("_common.STARTUP_MODULES", modules)
    note_missing_bytecode.cache_clear()
    measure({"case": lambda: 1.0}, 1)
    measure({"case": lambda: 1.0}, 1)  # batch.py measures several parts: one note
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1
    assert said[0].startswith("note: no byte-code (or older than its source) for bench_fresh and")
    assert "compileall" in said[0]


@pytest.mark.parametrize(
    ("baseline", "other", "shown"),
    [
        (11.08, 5.82, "1.90x faster"),
        (6.01, 11.35, "1.89x slower"),  # printed "0.53x faster"
        (1.0, 1.0, "1.00x faster"),
        (6.01, 0.0, "no ratio (not above 0 s)"),  # a start-up longer than the batch
        (6.01, -0.4, "no ratio (not above 0 s)"),
    ],
)
def test_a_speed_ratio_says_slower_when_it_is(baseline: float, other: float, shown: str) -> None:
    assert speed_ratio(baseline, other) == shown


def test_a_target_set_for_another_size_says_so() -> None:
    """bundles.py's 1-s target is for 10,000 files; with --files 10 it read as met by a
    sidecar a thousandth the size (dataset_digest.py's warm digest already said so)."""
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "bundles.py"
    small = ["--files", "10", "--runs", "1", "--big-mib", "1", "--markdown"]
    done = subprocess.run(
        [sys.executable, str(script), *small],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = [line.split(" | ") for line in done.stdout.splitlines() if "10 files" in line]
    assert [row[-1] for row in rows] == ["<= 1000 ms for 10000 |"] * 2


def test_a_title_counts_the_cpus_the_benchmark_may_use() -> None:
    """Pinned to one core (`taskset -c 0`, a batch job's cgroup), inventory.py said
    "2 CPUs" (the machine's) over one core's throughput."""
    import os
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "inventory.py"
    one_core = min(os.sched_getaffinity(0))
    done = subprocess.run(
        [sys.executable, str(script), "--files", "1", "--mib", "1", "--runs", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_core}),
    )
    assert done.stdout.splitlines()[0].endswith("median of 1 runs; 1 CPUs")


def test_the_records_benchmark_times_each_command_on_both_run_roots() -> None:
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "records.py"
    done = subprocess.run(
        [sys.executable, str(script), "--records", "3", "--outputs", "2", "--runs", "1",
         "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )  # fmt: skip
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| run")]
    assert [row[0].lstrip("| ") for row in rows] == [
        f"{command}, {count}"
        for command in (
            "runs list",
            "runs list, filtered",
            "runs show latest",
            "runs show ID",
            "run --overwrite",
        )
        for count in ("1 record", "4 records")
    ]
    # the long history's rows carry the command's peak memory and a ratio
    assert all(
        row[1].endswith(" MiB") and row[2].endswith("the 1-record root") for row in rows[1::2]
    )


def test_the_run_part_of_the_digest_benchmark_measures_a_run_per_dataset_file() -> None:
    """dataset_digest.py --only run: real runs on a large and a one-file dataset, their
    time and memory per dataset file against a bare walk, and the manifests they left."""
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "dataset_digest.py"
    done = subprocess.run(
        [sys.executable, str(script), "--only", "run", "--run-files", "30", "--runs", "2",
         "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )  # fmt: skip
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row[0].lstrip("| ") for row in rows] == [
        "run, 1-file dataset",
        "run, 30-file dataset",
        "bare stat walk, in-process",
        "run, per dataset file",
        "manifests after 3 runs",
    ]
    assert rows[1][1].endswith(" MiB") and rows[1][2].endswith("its memory")
    assert rows[3][1].endswith(" bytes") and rows[3][2].endswith("bare walks' CPU time")
    assert rows[4][1].startswith(("1 file(s)", "3 file(s)"))


def test_the_instruction_clock_counts_the_work_a_command_does() -> None:
    """`--clock instructions` (valgrind's count) answers more for a command that does
    more, and a command that fails ends the benchmark with its stderr."""
    from _common import instructions

    idle = instructions([sys.executable, "-c", "pass"])
    busy = instructions([sys.executable, "-c", "for i in range(300_000): pass"])
    assert 1e6 < idle < busy
    with pytest.raises(SystemExit, match=r"(?s)failed under valgrind.*nope"):
        instructions([sys.executable, "-c", "import sys; sys.exit('nope')"])
