"""The environment that the container integration tests rely on, checked for real.

These run the offline test image on each engine with the mount options the
container backends will use, so a broken engine setup shows up here by name
rather than as a confusing failure deep in a backend test.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from engines import TEST_IMAGE, engine_cli


def run_in(engine: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*engine_cli(engine), "run", "--rm", "--network", "none", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.engines
def test_test_image_runs_as_the_invoking_user(engine, tmp_path):
    uid, gid = os.getuid(), os.getgid()
    result = run_in(engine, "--user", f"{uid}:{gid}", TEST_IMAGE, "sh", "-c", "id -u; id -g")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(uid), str(gid)]


@pytest.mark.engines
def test_read_only_bind_mount_refuses_writes(engine, tmp_path):
    (tmp_path / "data").mkdir()
    result = run_in(
        engine, "-v", f"{tmp_path / 'data'}:/data:ro", TEST_IMAGE, "sh", "-c", "touch /data/x"
    )
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert not (tmp_path / "data" / "x").exists()
