"""The private Podman service's folder is removed by the next runner once its own is gone.

Real processes, killed with SIGKILL as a runner can be: no engine is needed,
only the lock the folder holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mdivicomtools_podman.service_folder import LOCK_NAME, PREFIX, ServiceFolder, sweep

HOLDER = (
    "import sys, time\n"
    "from mdivicomtools_podman.service_folder import ServiceFolder\n"
    "print(ServiceFolder().path, flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_runners_folder_is_swept_and_a_live_ones_kept(tmp_path):
    alive, alive_folder = _holder(tmp_path)
    killed, killed_folder = _holder(tmp_path)
    try:
        (killed_folder / "service.log").write_text("log\n")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert sweep(tmp_path) == [killed_folder]
        assert not killed_folder.exists()
        assert (alive_folder / LOCK_NAME).is_file()
    finally:
        alive.kill()
        alive.wait()
    assert sweep(tmp_path) == [alive_folder]


def test_folders_without_the_lock_are_left_alone(tmp_path):
    # another version's folder, or one whose lock is not yet in place
    old = tmp_path / f"{PREFIX}old"
    old.mkdir()
    (old / "service.log").write_text("")
    pending = tmp_path / f"{PREFIX}new"
    pending.mkdir()
    (pending / f".{LOCK_NAME}.new").write_text("")
    assert sweep(tmp_path) == []
    assert old.is_dir() and pending.is_dir()


def test_a_new_folder_sweeps_first_and_is_removed_with_its_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    killed, stale = _holder(tmp_path)
    killed.kill()
    killed.wait()
    folder = ServiceFolder()
    assert folder.path.parent == tmp_path and not stale.exists()
    assert sweep(tmp_path) == []  # held by this process
    folder.remove()
    assert list(tmp_path.iterdir()) == []
