"""benchmarks/sync_accuracy.py --chapters: the evaluation's sessions cut into chapter
files, and each file judged against its stream's truth in its own time."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import sync_accuracy

RATE = 1000


def _wav(path: Path, seconds: float, channels: int = 1) -> bytes:
    """A 16-bit WAV whose every frame differs (so a lost or doubled frame shows)."""
    frames = int(seconds * RATE)
    data = b"".join((i % 32768).to_bytes(2, "little") * channels for i in range(frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(data)
    return data


def _frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as handle:
        return handle.readframes(handle.getnframes())


def test_a_session_is_cut_into_chapters_exactly_and_once(tmp_path):
    session = tmp_path / "sessions" / "rt0.5 10dB 2cam 25s"
    whole = {
        "str-cam1": _wav(session / "raw/audio/str-cam1/str-cam1.wav", 25),
        "str-cam2": _wav(session / "raw/audio/str-cam2/str-cam2.wav", 12, channels=2),
    }
    (session / "rt0.5 10dB 2cam 25s_session.yaml").write_text("id: x\n")
    into = tmp_path / "chapters-10" / session.name
    assert sync_accuracy.chaptered(session, into, 10) == into
    assert (into / "rt0.5 10dB 2cam 25s_session.yaml").read_text() == "id: x\n"
    parts = sync_accuracy.files_of(into)
    assert parts == {
        "str-cam1": [
            ("str-cam1-01.wav", 0.0, 10.0),
            ("str-cam1-02.wav", 10.0, 10.0),
            ("str-cam1-03.wav", 20.0, 5.0),
        ],
        "str-cam2": [("str-cam2-01.wav", 0.0, 10.0), ("str-cam2-02.wav", 10.0, 2.0)],
    }
    for sid, files in parts.items():
        joined = b"".join(_frames(into / "raw/audio" / sid / name) for name, _, _ in files)
        assert joined == whole[sid]  # no frame lost or doubled at a cut
    # made once: a second call keeps what is there
    marker = into / "raw/audio/str-cam1/str-cam1-01.wav"
    before = marker.stat().st_mtime_ns
    sync_accuracy.chaptered(session, into, 10)
    assert marker.stat().st_mtime_ns == before


def test_only_wav_recordings_are_cut(tmp_path):
    session = tmp_path / "s"
    _wav(session / "raw/audio/str-cam1/str-cam1.wav", 5)
    (session / "raw/audio/str-cam2").mkdir(parents=True)
    (session / "raw/audio/str-cam2/str-cam2.mp4").write_bytes(b"not cut")
    with pytest.raises(SystemExit, match="WAV recordings only"):
        sync_accuracy.chaptered(session, tmp_path / "c", 2)


def test_a_file_is_judged_in_its_own_time():
    """A chapter's answer maps its own time to the reference's; the truth maps the
    stream's. A file starting 120 s in, on a clock 100 ppm fast that started 2 s
    after the reference: exact, and 1 ms late."""
    info = {"drift_ppm": {"str-cam2": 100}, "alternatives_s": {"str-cam2": [2.0]}}
    exact = {"offset_s": 120 * (1 + 100e-6) + 2.0, "drift_ppm": 100}
    error = sync_accuracy.error_ms(exact, info, "str-cam2", 60.0, start_s=120.0)
    assert error == pytest.approx(0.0, abs=1e-6)
    late = {**exact, "offset_s": exact["offset_s"] + 0.001}
    error = sync_accuracy.error_ms(late, info, "str-cam2", 60.0, start_s=120.0)
    assert error == pytest.approx(1.0, abs=1e-6)
    # the file's entry in its stream's result, by name; the top for one file
    found = {"offset_s": 1.0, "files": [{"audio": {"file": "a.wav"}}, {"audio": {"file": "b.wav"}}]}
    assert sync_accuracy.file_result(found, "b.wav") == {"audio": {"file": "b.wav"}}
    assert sync_accuracy.file_result({"audio": {"file": "a.wav"}}, "a.wav")["audio"]
    assert sync_accuracy.file_result(found, "c.wav") == {}


def test_chapters_with_the_peers_is_refused(tmp_path):
    """The peers take one file a stream: --chapters without --tools ours is a usage
    error (exit 2) that says what to add."""
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "sync_accuracy.py"
    result = subprocess.run(
        [sys.executable, str(script), "--chapters", "120", "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "error: --chapters runs sync-audio alone (the peers take one file a stream): "
            "add --tools ours"
        )
    ), result.stderr
