"""Which real container engines this test run may use.

A contributor's laptop may have neither engine, so engine tests skip there with
the reason. CI sets MDIVICOM_REQUIRE_ENGINES=docker,podman,slurm (see .ci/run), and
then an engine that does not answer fails the test instead: a green CI must mean
the container behaviour was checked on real engines.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

TEST_IMAGE = "localhost/mdivicom-test:1"
PODMAN_URL = os.environ.get("MDIVICOM_PODMAN_URL", "unix:///run/podman/podman.sock")
ENGINES = ("docker", "podman")


def engine_cli(engine: str) -> list[str]:
    return ["docker"] if engine == "docker" else ["podman", "--remote", "--url", PODMAN_URL]


def required_engines() -> set[str]:
    raw = os.environ.get("MDIVICOM_REQUIRE_ENGINES", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


@functools.cache
def engine_problem(engine: str) -> str | None:
    """None when `engine` answers and has the test image, else why not."""
    binary = engine_cli(engine)[0]
    if shutil.which(binary) is None:
        return f"the {binary} command is not installed"
    try:
        version = subprocess.run(
            [*engine_cli(engine), "version"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return f"{engine} did not answer within 20 s"
    if version.returncode != 0:
        last = (version.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{engine} does not answer: {last}"
    image = subprocess.run(
        [*engine_cli(engine), "image", "inspect", TEST_IMAGE],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if image.returncode != 0:
        return f"{engine} has no {TEST_IMAGE} (build it with: bash scripts/setup-engines.sh)"
    return None


def need_engine(engine: str) -> None:
    """Skip (or, when CI requires the engine, fail) unless `engine` is usable."""
    problem = engine_problem(engine)
    if problem is None:
        return
    if engine in required_engines():
        pytest.fail(f"MDIVICOM_REQUIRE_ENGINES names {engine}, but {problem}")
    pytest.skip(f"{engine} not usable here: {problem}")


@functools.cache
def slurm_problem() -> str | None:
    """None when a Slurm controller answers and dask-jobqueue is installed, else why not."""
    if shutil.which("sbatch") is None:
        return "the sbatch command is not installed (start one with: bash scripts/setup-slurm.sh)"
    import importlib.util

    # find_spec, not import: importing dask_jobqueue replaces the SIGINT handler
    if importlib.util.find_spec("dask_jobqueue") is None:
        return "dask-jobqueue is not installed: pip install -e '.[slurm]'"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return "the Slurm controller does not answer (start it with: bash scripts/setup-slurm.sh)"
    return None


def need_slurm() -> None:
    """Skip (or, when CI requires slurm, fail) unless a Slurm cluster is usable."""
    problem = slurm_problem()
    if problem is None:
        return
    if "slurm" in required_engines():
        pytest.fail(f"MDIVICOM_REQUIRE_ENGINES names slurm, but {problem}")
    pytest.skip(f"slurm not usable here: {problem}")


#: one lock per machine, whichever checkout or Python the suite runs from
SLURM_LOCK = "/tmp/mdivicom-tests-slurm.lock"


@contextlib.contextmanager
def slurm_lock() -> Iterator[None]:
    """Hold the machine-wide lock of the tests that submit Slurm jobs (blocks until free)."""
    with open(SLURM_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
