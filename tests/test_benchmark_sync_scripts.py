"""benchmarks/sync_memory.py and sync_chapters.py: what they measure is what their titles say.

Both run sync-audio, which the development venv does not have: they must say so
before minutes of writing audio, and `--help` must work anyway. A kept session
is reused only for the sizes it was written with, and a "chapters" row must
time streams that were split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import sync_memory  # noqa: E402

#: runs a script as a Python without sync-audio does, as the development venv is,
#: whatever this one has (a None in sys.modules is "not installed" to find_spec)
WITHOUT_SYNC_AUDIO = """
import runpy, sys
sys.modules["mdivicom_sync_audio"] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _script(name: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SYNC_AUDIO, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TMPDIR=str(tmp)),
        timeout=120,
    )


@pytest.mark.parametrize("name", ["sync_memory.py", "sync_chapters.py"])
def test_without_sync_audio_help_works_and_a_run_stops_at_once(name: str, tmp_path: Path) -> None:
    helped = _script(name, "--help", tmp=tmp_path)
    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("usage: ")
    ran = _script(name, tmp=tmp_path)
    assert ran.returncode == 1
    assert ran.stderr.startswith("sync-audio is not installed in ")
    assert "examples/sync-audio" in ran.stderr
    assert len(ran.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no audio was written first


def test_chapters_longer_than_a_split_stream_are_refused(tmp_path: Path) -> None:
    """In a 2-minute session the third camera has 28.3 s: 1-minute chapters would leave
    it (and every stream) one file, and the "chapters" rows would time the one-file
    layout under another name."""
    ran = _script("sync_chapters.py", "--minutes", "2", "--chapter-minutes", "1", tmp=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.splitlines()[-1] == (
        "sync_chapters.py: error: --chapter-minutes must be under 0.47 with --minutes 2: "
        "str-c-camera is 28.3 s long, and a stream no longer than a chapter is not split"
    )


def test_a_kept_session_is_reused_only_for_its_own_sizes(tmp_path: Path) -> None:
    session = tmp_path / "ses-long"
    recorder = session / "raw" / "audio" / "str-a-recorder" / "recorder.flac"
    camera = session / "raw" / "video" / "str-b-camera" / "camera.mp4"
    small = {"hours": 0.002, "camera_minutes": 0.1}
    # what a run stopped while writing leaves: the folders, part of a file, no sizes
    recorder.parent.mkdir(parents=True)
    recorder.write_bytes(b"fLaC")
    assert not sync_memory.session_written(tmp_path, small)

    sync_memory.write_session(tmp_path, small, recorder, camera)
    assert sync_memory.session_written(tmp_path, small)
    assert recorder.stat().st_size > 100_000  # 7.2 s of 48 kHz stereo, not the leftover
    assert camera.stat().st_size > 0
    assert json.loads((tmp_path / "sizes.json").read_text()) == small

    assert not sync_memory.session_written(tmp_path, {"hours": 0.004, "camera_minutes": 0.1})
    assert not sync_memory.session_written(tmp_path, {"hours": 0.002, "camera_minutes": 0.2})


def test_the_runs_own_lines_stay_out_of_the_markdown_table(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`sync_memory.py > table.md`: mdivicom's summary (succeeded, outputs, record,
    warnings) went to stdout, into the table; it belongs on stderr."""
    summary = "import sys; print('succeeded:  mdivicom/sync-audio', sys.argv[1:])"
    elapsed = sync_memory.run_sync_audio(
        [sys.executable, "-c", summary], tmp_path / "ses-long", tmp_path / "out"
    )
    assert elapsed > 0
    said = capfd.readouterr()
    assert said.out == ""
    assert said.err.startswith("succeeded:  mdivicom/sync-audio ['--dataset', ")
