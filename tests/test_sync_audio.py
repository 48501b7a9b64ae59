"""The sync-audio example plugin through the real CLI: accuracy on generated sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pluginsite import MDIVICOM, pip_install_target

EXAMPLE = Path(__file__).parents[1] / "examples" / "sync-audio"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("sync-audio-site")
    pip_install_target(target, EXAMPLE)
    env = dict(os.environ, PYTHONPATH=str(target), MDIVICOM_PLUGIN_PATH="")
    return env


@pytest.fixture(scope="module")
def study(installed, tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "study"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mdivicom_sync_audio.sample",
            str(root),
            "--sessions",
            "4",
            "--seed",
            "7",
        ],
        env=installed,
        check=True,
    )
    return root


def test_recovered_offsets_are_within_a_millisecond(installed, study, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            MDIVICOM,
            "run",
            "sync-audio",
            "--dataset",
            str(study),
            "--out",
            str(out),
            "--sessions",
            "ses-*",
            "--jobs",
            "2",
            "--json",
        ],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"] == {"succeeded": 4}
    truth = json.loads((study / "sample_truth.json").read_text())
    errors_ms = []
    for session, info in truth.items():
        maps = out / session / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
        assert len(info["offsets_s"]) in (2, 3, 4)
        for stream, true_offset in info["offsets_s"].items():
            found = json.loads((maps / f"{stream}_timebase_map.json").read_text())
            assert found["reference_stream"] == "str-cam1"
            errors_ms.append(abs(found["offset_s"] - true_offset) * 1000)
            if stream != "str-cam1":
                assert found["confidence"] > 6
                assert abs(found["drift_ppm"]) < 5  # the generator adds no drift
        (record_path,) = (out / session / "_runs").glob("*.json")
        record = json.loads(record_path.read_text())
        assert record["resultbundles"][0]["valid"] is True
        assert record["resultbundles"][0]["type"] == "mdivicomtools.sync_audio.v1"
    assert max(errors_ms) < 1.0, errors_ms


def test_the_sample_s_chapter_files_are_each_synced(installed, tmp_path):
    """The demo's `+chapters` scene: the last camera's recording in two files, each
    file's offset (in its own time) against the truth the generator wrote."""
    study = tmp_path / "study"
    subprocess.run(
        [
            *(sys.executable, "-m", "mdivicom_sync_audio.sample", str(study)),
            *("--sessions", "2", "--seed", "5", "--scenes", "dry+chapters,room+chapters"),
        ],
        env=installed,
        check=True,
    )
    out = tmp_path / "out"
    result = _run(installed, study, out, "--sessions", "ses-*")
    assert result.returncode == 0, result.stdout + result.stderr
    truth = json.loads((study / "sample_truth.json").read_text())
    for session, info in truth.items():
        [(stream, files)] = info["files"].items()  # one camera split in two
        assert [f["file"] for f in files] == ["GX010042.wav", "GX020042.wav"]
        found = _map(out, session, stream)
        assert [f["audio"]["file"] for f in found["files"]] == ["GX010042.wav", "GX020042.wav"]
        for entry, true in zip(found["files"], files, strict=True):
            error_ms = abs(entry["offset_s"] - true["offset_s"]) * 1000
            assert error_ms <= max(entry["error_bound_ms"], 0.5), (session, entry, true)
        assert found["offset_s"] == found["files"][0]["offset_s"]
        assert abs(found["offset_s"] - info["offsets_s"][stream]) * 1000 < 1.0


def test_a_rerun_on_the_same_files_is_the_same(installed, study, tmp_path):
    """Every output is the same again; the sidecar differs only in its run stamps."""
    out = tmp_path / "out"
    session = str(study / "sessions" / "ses-02")
    first = subprocess.run(
        [MDIVICOM, "run", "sync-audio", "--dataset", session, "--out", str(out)],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        [MDIVICOM, "rerun", str(out), "latest", "--json"],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads(again.stdout)
    assert report["differing"] == [] and report["missing"] == [] and report["extra"] == []
    assert report["stamped"] == ["dataset/resultbundle.json"]
    assert "provenance.json" in report["identical"]
    assert "dataset/derived/sync/reports/sync_audio.png" in report["identical"]


def test_dry_run_and_config_schema(installed, study, tmp_path):
    session = study / "sessions" / "ses-01"
    dry = subprocess.run(
        [
            MDIVICOM,
            "run",
            "sync-audio",
            "--dataset",
            str(session),
            "--out",
            str(tmp_path / "dry"),
            "--dry-run",
            "--json",
        ],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    record = json.loads(dry.stdout)
    assert record["status"] == "dry_run" and record["result"]["reference_stream"] == "str-cam1"
    bad = subprocess.run(
        [
            MDIVICOM,
            "run",
            "sync-audio",
            "--dataset",
            str(session),
            "--out",
            str(tmp_path / "bad"),
            "--set",
            "max_lag_s=-1",
        ],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "config.max_lag_s: -1 is less than or equal to the minimum of 0" in bad.stderr
    fast = subprocess.run(
        [
            MDIVICOM,
            "run",
            "sync-audio",
            "--dataset",
            str(session),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "analysis_rate_hz=192000",
        ],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert fast.returncode == 2
    assert "config.analysis_rate_hz: 192000 is greater than the maximum of 48000" in fast.stderr


@pytest.mark.heavy
def test_drift_is_estimated_and_the_offset_refers_to_time_zero(installed, tmp_path):
    root = tmp_path / "drifting"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mdivicom_sync_audio.sample",
            str(root),
            "--sessions",
            "2",
            "--seed",
            "5",
            "--seconds",
            "40",
            "--drift-ppm",
            "80",
        ],
        env=installed,
        check=True,
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [
            MDIVICOM,
            "run",
            "sync-audio",
            "--dataset",
            str(root),
            "--out",
            str(out),
            "--sessions",
            "ses-*",
        ],
        env=installed,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    truth = json.loads((root / "sample_truth.json").read_text())
    for session, info in truth.items():
        maps = out / session / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
        for stream, true_offset in info["offsets_s"].items():
            if stream == "str-cam1":
                continue
            found = json.loads((maps / f"{stream}_timebase_map.json").read_text())
            # 40 s recordings: the drift line rests on 4 s windows, good to about 10 ppm
            assert abs(found["drift_ppm"] - info["drift_ppm"][stream]) < 10, found
            assert isinstance(found["drift_via"], list), found
            assert abs(found["offset_s"] - true_offset) * 1000 < 1.0, found


# --- issue 15: reverberant rooms, camera files, whole-overlap search, never silently wrong ---

CASE_RATE = 16_000


def _scene(seconds: float, seed: int):
    """Claps and noise bursts under a syllable-rate envelope: something to align on."""
    import numpy as np

    rng = np.random.default_rng(seed)
    count = int(seconds * CASE_RATE)
    scene = rng.standard_normal(count) * 0.002
    for _ in range(int(seconds * 1.5)):
        length = int(rng.uniform(0.05, 0.6) * CASE_RATE)
        start = int(rng.integers(0, count - length))
        envelope = np.exp(-np.arange(length) / (length / 4))
        scene[start : start + length] += rng.standard_normal(length) * envelope
    return scene


def _write(path: Path, samples, rate: int = CASE_RATE) -> None:
    import wave

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(samples))) or 1.0
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.round(samples / peak * 20000).astype("<i2").tobytes())


def _cut(scene, start_s: float, seconds: float):
    return scene[int(start_s * CASE_RATE) : int((start_s + seconds) * CASE_RATE)]


def _cuts(session: Path, scene, files: dict[str, tuple[float, float]]) -> None:
    """Each file under raw/audio/ a cut of the scene: (start in the scene s, length s)."""
    for name, (start_s, seconds) in files.items():
        _write(session / "raw/audio" / name, _cut(scene, start_s, seconds))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Hand-made sessions whose truth is exact: each camera is a cut of one scene."""
    import numpy as np

    root = tmp_path_factory.mktemp("cases")
    scene = _scene(70, seed=3)
    audio = root / "sessions"
    # a camera that started 14 s after the reference: beyond the old 10 s window
    _write(audio / "ses-far/raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 30))
    _write(audio / "ses-far/raw/audio/str-cam2/cam2.wav", _cut(scene, 14, 30))
    # only 5 s in common
    _write(audio / "ses-short/raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 30))
    _write(audio / "ses-short/raw/audio/str-cam2/cam2.wav", _cut(scene, 25, 30))
    # a muted camera next to a good one
    _write(audio / "ses-silent/raw/audio/str-cam1/cam1.wav", _cut(scene, 2, 20))
    _write(audio / "ses-silent/raw/audio/str-cam2/cam2.wav", _cut(scene, 0, 20))
    _write(audio / "ses-silent/raw/audio/str-cam3/cam3.wav", np.zeros(20 * CASE_RATE))
    # a camera file that is not a media file at all
    _write(audio / "ses-corrupt/raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 10))
    bad = audio / "ses-corrupt/raw/video/str-cam2/C0042.MP4"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    truth = {"ses-far": 14.0, "ses-short": 25.0, "ses-silent": -2.0}
    return root, truth


def _run(env, dataset: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MDIVICOM, "run", "sync-audio", "--dataset", str(dataset), "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
    )


def _map(out: Path, session: str, stream: str) -> dict:
    maps = out / session / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
    return json.loads((maps / f"{stream}_timebase_map.json").read_text())


def _record(out: Path, session: str) -> dict:
    (path,) = (out / session / "_runs").glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def case_runs(installed, cases, tmp_path_factory):
    root, _ = cases
    out = tmp_path_factory.mktemp("case-runs")
    result = _run(installed, root, out, "--sessions", "ses-[fs]*", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    return out


def test_offsets_beyond_ten_seconds_and_short_overlaps_are_found(cases, case_runs):
    _, truth = cases
    for session in ("ses-far", "ses-short"):
        found = _map(case_runs, session, "str-cam2")
        error_ms = abs(found["offset_s"] - truth[session]) * 1000
        assert error_ms < 1.0, found
        assert error_ms <= found["error_bound_ms"], found  # the bound holds
        assert found["confidence"] == pytest.approx(1 / found["error_bound_ms"], rel=0.02)
    assert _map(case_runs, "ses-short", "str-cam2")["drift_ppm"] is None  # 5 s: no drift claim


def test_a_limited_search_that_misses_the_offset_says_so(installed, cases, tmp_path):
    root, _ = cases
    result = _run(
        installed, root / "sessions" / "ses-far", tmp_path / "out", "--set", "max_lag_s=10"
    )
    # not a wrong number: the only other stream cannot be synced, so the run fails
    assert result.returncode == 1
    # the one-line error is in the run's summary (stdout); the traceback only in the log
    said = result.stdout + result.stderr
    assert "str-cam2: no common sound found with the reference" in said
    assert "the search was limited to +-10 s" in said


def test_unrelated_long_recordings_say_the_pieces_found_nothing_either(installed, tmp_path):
    """Two 100-s recordings of different scenes: long enough for the search on
    30-s pieces, which finds no line either; the run fails (exit 1) with one line
    that says both searches came up empty, not a number."""
    session = tmp_path / "ses-unrelated"
    _write(session / "raw/audio/str-cam1/cam1.wav", _scene(100, seed=3))
    _write(session / "raw/audio/str-cam2/cam2.wav", _scene(100, seed=4))
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "str-cam2: no common sound found with the reference" in said
    assert "nor do 30-s pieces of it agree on one lag or drift" in said


def test_a_silent_stream_is_a_clear_failure_not_a_number(cases, case_runs):
    _, truth = cases
    silent = _map(case_runs, "ses-silent", "str-cam3")
    assert silent["offset_s"] is None and silent["status"] == "failed"
    assert "silent" in silent["error"] and "cam3.wav" in silent["error"]
    good = _map(case_runs, "ses-silent", "str-cam2")
    assert abs(good["offset_s"] - truth["ses-silent"]) * 1000 < 1.0
    record = _record(case_runs, "ses-silent")
    assert any("str-cam3" in w and "silent" in w for w in record["result"]["warnings"])
    # the runner copies the plugin's warnings into the record's own and onto the terminal
    assert any("str-cam3" in w and "silent" in w for w in record["warnings"])
    png = case_runs / "ses-silent/sync-audio/dataset/derived/sync/reports/sync_audio.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strict_turns_a_warning_into_a_failed_run(installed, cases, tmp_path):
    root, _ = cases
    result = _run(
        installed, root / "sessions" / "ses-silent", tmp_path / "out", "--set", "strict=true"
    )
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "strict: 1 doubtful result(s): str-cam3: cam3.wav is silent" in said


def test_a_corrupt_file_is_an_error_naming_the_file(installed, cases, tmp_path):
    root, _ = cases
    result = _run(installed, root / "sessions" / "ses-corrupt", tmp_path / "out")
    assert result.returncode != 0
    assert "C0042.MP4" in result.stdout + result.stderr, result.stdout + result.stderr


def test_an_empty_or_cut_short_file_says_what_happened_and_what_to_do(installed, tmp_path):
    """An empty file and a camera file cut short before its index (no 'moov' box) were
    both `cannot open as audio or video ([Errno 1094995529] Invalid data found ...)`
    with the path again; each now says what it is and what to do, and a video file
    without sound says it cannot be synced by it."""
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(_scene(10, seed=12), 0, 8))
    camera = session / "raw/video/str-cam2/C0001.MP4"
    camera.parent.mkdir(parents=True)
    said = {}
    for kind, data in (
        ("empty", b""),
        # what a camera leaves when the power goes: its header and the media, no index
        ("cut", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41" + b"\x00\x10\x00\x00mdat"),
    ):
        camera.write_bytes(data + bytes(range(256)) * 16 if data else data)
        result = _run(installed, session, tmp_path / kind)
        assert result.returncode == 1, result.stdout + result.stderr
        [said[kind]] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
        assert said[kind].count(str(camera)) == 1, said[kind]
    assert said["empty"].endswith(
        "C0001.MP4: the file is empty (0 bytes): a recording never written (the camera "
        "stopped at once) or a copy that failed; copy it again, or remove it"
    ), said
    assert "C0001.MP4: an MP4/MOV file without its index (no 'moov' box): " in said["cut"], said
    assert said["cut"].endswith("from a good file of the same camera, or remove it"), said
    # a file this process cannot read either (here a folder) still gets FFmpeg's words
    camera.unlink()
    camera.mkdir()
    said = _run_case(_READ_ERROR_CASE, installed, str(camera))
    assert said.startswith(f"{camera}: cannot open as audio or video ("), said


_READ_ERROR_CASE = r"""
import json, sys
from pathlib import Path
from mdivicom_sync_audio.io import MediaError, read_audio

try:
    read_audio(Path(sys.argv[1]), 8000)
except MediaError as error:
    print(json.dumps(str(error)))
"""


def test_every_stream_folder_is_synced_or_named(installed, tmp_path):
    """What a lab's folders hold beside the recordings: a phone's .3gp and an .M4V
    are synced, a Mac's AppleDouble `._` companion is left out, a folder of files that
    are no media by name is named in a warning (it was dropped without a word), and a
    link to a card not mounted, or one stream id under both audio/ and video/, is an
    error naming the paths (one of them was dropped without a word)."""
    scene = _scene(20, seed=9)
    session = tmp_path / "ses-lab"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(session / "raw/video/str-cam2/C0001.M4V", _cut(scene, 1, 16))
    _write(session / "raw/audio/str-phone/rec.3gp", _cut(scene, 2, 16))
    (session / "raw/audio/str-phone/._rec.3gp").write_bytes(b"\x00\x05\x16\x07" + bytes(4000))
    (session / "raw/audio/str-phone/str-phone_stream.yaml").write_text("timebase: audio\n")
    (session / "raw/video/str-drone").mkdir(parents=True)
    (session / "raw/video/str-drone/DJI_0001.xyz").write_bytes(bytes(100))
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert abs(_map(tmp_path, "out", "str-cam2")["offset_s"] - 1.0) < 0.001
    assert abs(_map(tmp_path, "out", "str-phone")["offset_s"] - 2.0) < 0.001
    (warning,) = _record(tmp_path, "out")["warnings"]
    assert warning.startswith(
        "str-drone: raw/video/str-drone holds no media file by its suffix (DJI_0001.xyz), "
        "so it is not synced"
    ), warning
    # a link to a card not mounted: the stream would be synced without that file
    (session / "raw/video/str-cam2/C0002.MP4").symlink_to(tmp_path / "card/C0002.MP4")
    result = _run(installed, session, tmp_path / "out2")
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert f"str-cam2/C0002.MP4: a link to {tmp_path / 'card/C0002.MP4'}, which does not " in error
    (session / "raw/video/str-cam2/C0002.MP4").unlink()
    # one stream id, two folders of media: which one is the stream?
    _write(session / "raw/audio/str-cam2/cam2.wav", _cut(scene, 1, 16))
    result = _run(installed, session, tmp_path / "out3")
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert "raw/audio/str-cam2 and " in error and "raw/video/str-cam2 both hold media" in error


def test_a_study_given_as_the_dataset_says_to_give_a_session(installed, study, tmp_path):
    # `--dataset study` without --sessions said only "has 0 stream(s)"
    result = _run(installed, study, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert error.endswith(
        f"syncing needs at least two; it is a study, whose streams are in its sessions: "
        f"give one, --dataset {study}/sessions/<session>, or run every one with "
        "--sessions 'ses-*'"
    ), error


def test_media_in_a_stream_folder_s_subfolders_is_named(installed, tmp_path):
    """A camera card copied whole into a stream folder (its file under
    DCIM/100GOPRO/) left that stream out of the results, and a chapter in a
    subfolder beside a stream's files was not read, in a run that succeeded
    without a word; each is now named in a warning."""
    scene = _scene(20, seed=9)
    session = tmp_path / "ses-card"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(session / "raw/audio/str-cam2/cam2.wav", _cut(scene, 1, 16))
    _write(session / "raw/audio/str-cam2/more/cam2b.wav", _cut(scene, 2, 14))
    _write(session / "raw/video/str-gopro/DCIM/100GOPRO/GX010042.MP4", _cut(scene, 2, 16))
    (session / "raw/video/str-gopro/DCIM/100GOPRO/._GX010042.MP4").write_bytes(bytes(100))
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert abs(_map(tmp_path, "out", "str-cam2")["offset_s"] - 1.0) < 0.001
    maps = tmp_path / "out/sync-audio/dataset/derived/sync/timebase_maps"
    assert sorted(path.name for path in maps.iterdir()) == [
        "str-cam1_timebase_map.json",
        "str-cam2_timebase_map.json",
    ]
    warnings = _record(tmp_path, "out")["warnings"]
    assert warnings == [
        "str-cam2: raw/audio/str-cam2 holds media in its subfolders (more/cam2b.wav), which "
        "are not read: only the files directly in a stream folder are its recordings (a "
        "camera card copied whole?); move them up into it to sync them",
        "str-gopro: raw/video/str-gopro holds media in its subfolders "
        "(DCIM/100GOPRO/GX010042.MP4), so the stream is not synced: only the files directly "
        "in a stream folder are its recordings (a camera card copied whole?); move them up "
        "into it to sync them",
    ], warnings
    for line in warnings:
        assert f"warning:    {line}" in result.stdout, result.stdout


def test_a_track_number_written_as_a_float_reads_that_track(installed, tmp_path):
    """JSON's integer takes 1.0 (the config schema passes it): `audio_track=0.0`, one
    number or per stream, reads track 0; it failed with `TypeError: list indices must
    be integers or slices, not float`."""
    scene = _scene(20, seed=10)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(session / "raw/audio/str-cam2/cam2.wav", _cut(scene, 1, 16))
    for n, setting in enumerate(("audio_track=0.0", "audio_track.str-cam2=0.0")):
        result = _run(installed, session, tmp_path / f"out{n}", "--set", setting)
        assert result.returncode == 0, result.stdout + result.stderr
        found = _map(tmp_path / f"out{n}", "", "str-cam2")
        assert found["audio"]["track"] == 0 and abs(found["offset_s"] - 1.0) < 0.001, found
    result = _run(installed, session, tmp_path / "out2", "--set", "audio_track=1.0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audio_track 1 asked, but the file has 1 audio track(s)" in result.stdout


_TWO_TRACKS_CASE = r"""
import json, sys, wave
from pathlib import Path
import av
import numpy as np

# a camera file whose first track is `first` (silence, or another microphone's noise)
# and whose second is the recorder's sound: PCM in Matroska, two tracks
recorder = Path(sys.argv[1])
with wave.open(str(recorder)) as handle:
    rate = handle.getframerate()
    sound = np.frombuffer(handle.readframes(handle.getnframes()), "<i2")
first = {
    "silent": np.zeros_like(sound),
    "noise": (np.random.default_rng(1).standard_normal(len(sound)) * 3000).astype("<i2"),
}[sys.argv[3]]
with av.open(sys.argv[2], "w", format="matroska") as out:
    tracks = [out.add_stream("pcm_s16le", rate=rate, layout="mono") for _ in range(2)]
    for track, samples in zip(tracks, (first, sound)):
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[None, start : start + 1024]), format="s16",
                layout="mono",
            )
            frame.rate, frame.pts = rate, start
            for packet in track.encode(frame):
                out.mux(packet)
print(json.dumps({}))
"""


def test_a_file_that_fails_on_its_main_track_says_how_to_read_another(installed, tmp_path):
    """A camera whose main track is a muted or a far microphone, beside the lapel
    microphone's track: the failure says which track was read and how to read the
    other (it said only `silent` or `no common sound found`), and that syncs."""
    scene = _scene(20, seed=11)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    for sid, first, start in (("str-cam2", "silent", 1), ("str-cam3", "noise", 2)):
        _write(tmp_path / f"{sid}.wav", _cut(scene, start, 16))
        (session / "raw/video" / sid).mkdir(parents=True)
        camera = session / "raw/video" / sid / "C0001.MKV"
        _run_case(_TWO_TRACKS_CASE, installed, str(tmp_path / f"{sid}.wav"), str(camera), first)
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr  # nothing synced
    hints = [
        f"{sid}: {said}; C0001.MKV has 2 audio tracks and track 0 was read: "
        f"--set audio_track.{sid}=1 reads track 1"
        for sid, said in (
            ("str-cam2", "C0001.MKV is silent, nothing to sync on"),
            ("str-cam3", "no common sound found with the reference"),
        )
    ]
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert hints[0] in error, error
    assert hints[1].split("; ")[1] in error.split("str-cam3: no common sound found")[1], error
    sets = ("--set", "audio_track.str-cam2=1", "--set", "audio_track.str-cam3=1")
    result = _run(installed, session, tmp_path / "out2", *sets)
    assert result.returncode == 0, result.stdout + result.stderr
    for sid, start in (("str-cam2", 1.0), ("str-cam3", 2.0)):
        found = _map(tmp_path / "out2", "", sid)
        assert found["audio"]["track"] == 1 and found["status"] == "ok", found
        assert abs(found["offset_s"] - start) < 0.001, found


def test_a_reference_read_on_its_wrong_track_says_how_to_read_another(installed, tmp_path):
    """A reference camera whose main track is a far microphone's noise: every other
    stream failed `no common sound found with the reference`, and nothing said that
    the reference file has another track; the run's error now says how to read it."""
    scene = _scene(20, seed=11)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-rec2/rec2.wav", _cut(scene, 1, 16))
    _write(session / "raw/audio/str-rec3/rec3.wav", _cut(scene, 2, 16))
    _write(tmp_path / "cam1.wav", _cut(scene, 0, 16))
    camera = session / "raw/video/str-cam1/C0001.MKV"
    camera.parent.mkdir(parents=True)
    _run_case(_TWO_TRACKS_CASE, installed, str(tmp_path / "cam1.wav"), str(camera), "noise")
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr  # nothing synced
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert error.endswith(
        "; the reference's C0001.MKV has 2 audio tracks and track 0 was read: "
        "--set audio_track.str-cam1=1 reads track 1"
    ), error
    result = _run(installed, session, tmp_path / "out2", "--set", "audio_track.str-cam1=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert abs(_map(tmp_path / "out2", "", "str-rec3")["offset_s"] - 2.0) < 0.001


def test_a_clip_under_a_second_says_it_is_too_short(installed, tmp_path):
    """A 0.5-s clip full of sound failed with `the overlap with the reference has no
    sound onsets`, sending the user to look for sound that is there; the failure
    now gives the time shared and the 1 s needed."""
    scene = _scene(20, seed=13)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(session / "raw/audio/str-cam2/cam2.wav", _cut(scene, 1, 14))
    _write(session / "raw/audio/str-cam3/clip.wav", _cut(scene, 5, 0.5))
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    found = _map(tmp_path / "out", "", "str-cam3")
    assert found["status"] == "failed", found
    assert found["error"] == (
        "str-cam3: where its sound matches best it shares 0.50 s with the reference "
        "(clip.wav is 0.50 s long), under the 1 s needed to align it"
    ), found
    assert f"warning:    {found['error']}" in result.stdout, result.stdout


def test_a_bound_too_few_blocks_measure_is_doubtful(installed, tmp_path):
    """A 2-s file (one 4-s block of sound shared) has no scatter of block peaks to
    measure, so its bound is a guess of 1 ms: it was `ok` (within max_error_ms 1)
    beside a warning that the bound is rough; it is `doubtful` now, whatever
    max_error_ms is."""
    scene = _scene(20, seed=13)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(session / "raw/audio/str-cam2/clip.wav", _cut(scene, 5, 2))
    for n, extra in enumerate(((), ("--set", "max_error_ms=5"))):
        result = _run(installed, session, tmp_path / f"out{n}", *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        found = _map(tmp_path / f"out{n}", "", "str-cam2")
        assert abs(found["offset_s"] - 5.0) < 0.001, found  # right, but not measured to be
        assert found["status"] == "doubtful", found
        assert _record(tmp_path, f"out{n}")["warnings"] == [
            "str-cam2: only 1 usable block(s) of overlap, so its bound of +-1.00 ms is a "
            "guess, not measured"
        ]


def test_channels_that_cancel_when_mixed_are_read_one_alone(installed, tmp_path):
    """A stereo recorder whose second channel is its first inverted (a polarity-
    reversed cable, an inverted safety channel) mixes down to nothing: it failed as
    `silent`; its first channel alone is read now, with a warning saying why."""
    import wave

    import numpy as np

    scene = _scene(20, seed=14)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    mono = np.round(_cut(scene, 1, 16) / np.max(np.abs(scene)) * 20000).astype("<i2")
    path = session / "raw/audio/str-rec/rec.wav"
    path.parent.mkdir(parents=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(CASE_RATE)
        handle.writeframes(np.stack([mono, -mono], axis=1).tobytes())
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    found = _map(tmp_path / "out", "", "str-rec")
    assert found["status"] == "ok" and abs(found["offset_s"] - 1.0) < 0.001, found
    assert _record(tmp_path, "out")["warnings"] == [
        "str-rec: rec.wav: its 2 channels cancel out when mixed down (one is another "
        "inverted: a polarity-reversed cable or an inverted safety channel?), so its first "
        "channel alone was read"
    ]


def test_a_doubtful_offset_says_what_makes_it_doubtful(installed, tmp_path):
    """A camera in a corner hears every sound twice, its walls' reflections 3 ms
    after the direct sound and twice as loud: the offset is warned, and the
    warning names the alternative that widened the bound, so a user knows what
    to look at."""
    import numpy as np

    scene = _scene(40, seed=5)
    echo = int(0.003 * CASE_RATE)
    camera = _cut(scene, 3, 30)
    camera = camera + 2.0 * np.concatenate([np.zeros(echo), camera[:-echo]])
    session = tmp_path / "ses-wall"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 30))
    _write(session / "raw/audio/str-cam2/cam2.wav", camera)
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    found = _map(tmp_path, "out", "str-cam2")
    assert found["status"] == "doubtful", found
    (warning,) = [w for w in _record(tmp_path, "out")["warnings"] if "cam2" in w]
    said, reason = warning.split(" (max_error_ms 1): ")
    assert said.endswith(f"only good to +-{found['error_bound_ms']:.2f} ms"), warning
    assert abs(found["offset_s"] - 3.0) * 1000 < 0.1, found  # the direct sound won
    # the reason names the reflection's peak, 3 ms away, which the bound covers
    assert reason.endswith(" 3.00 ms away"), reason
    assert found["error_bound_ms"] > 3.0, found


@pytest.mark.heavy
def test_reverberant_room_with_an_mp4_camera(installed, tmp_path):
    """A room (direct path, reflections, tail) and an AAC camera file with unmarked priming."""
    root = tmp_path / "room"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mdivicom_sync_audio.sample",
            str(root),
            "--sessions",
            "2",
            "--seed",
            "4",
            "--seconds",
            "40",
            "--scenes",
            "room+mp4",
            "--drift-ppm",
            "60",
        ],
        env=installed,
        check=True,
    )
    out = tmp_path / "out"
    result = _run(installed, root, out, "--sessions", "ses-*", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    truth = json.loads((root / "sample_truth.json").read_text())
    checked_mp4 = False
    for session, info in truth.items():
        for stream, true_offset in info["offsets_s"].items():
            if stream == "str-cam1":
                continue
            found = _map(out, session, stream)
            error_ms = abs(found["offset_s"] - true_offset) * 1000
            assert error_ms <= found["error_bound_ms"], (session, stream, found)
            if found["status"] == "ok":
                assert error_ms < 1.0, (session, stream, found)
                assert abs(found["drift_ppm"] - info["drift_ppm"][stream]) < 10, found
            if stream == "str-cam2":  # the MP4 camera
                checked_mp4 = True
                assert found["audio"]["codec"] == "aac"
                assert found["audio"]["priming_samples_dropped"] == 1024
                (video,) = found["video"]
                assert video["fps"] == 25.0
                assert video["offset_frames"] == pytest.approx(video["offset_s"] * 25, abs=0.01)
        reports = out / session / "sync-audio" / "dataset" / "derived" / "sync" / "reports"
        report = json.loads((reports / "sync_audio.json").read_text())
        assert report["analysis_rate_hz"] == 8000
    assert checked_mp4


# a script fragment the cases below start with: one WAV-like sound encoded into any
# container and codec PyAV writes, in the encoder's own frame size and sample format
_ENCODER = r"""
import fractions
import av
import numpy as np


def encode(path, kind, codec, sound, rate, *, timed=False, video=False, options=None):
    # timed: frames carry their sample times, so the encoder's packets start its delay
    # before zero and the muxer shifts the track (ahead of the video, if any) to hold them
    with av.open(str(path), "w", format=kind, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        size = stream.codec_context.frame_size or 1024
        fmt = stream.codec_context.format.name
        picture = out.add_stream("mpeg4", rate=25) if video else None
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for start in range(0, len(sound), size):
            block = sound[None, start : start + size]
            if fmt.startswith(("s16", "s32")):  # the encoder's own sample format
                bits = 16 if fmt.startswith("s16") else 32
                block = (block * (2 ** (bits - 1) - 1)).astype(f"int{bits}")
            frame = av.AudioFrame.from_ndarray(block, format=fmt, layout="mono")
            frame.rate = rate
            if timed:
                frame.pts, frame.time_base = start, fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if picture is not None:
            for index in range(len(sound) * 25 // rate):
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                image.pts = index
                for packet in picture.encode(image):
                    out.mux(packet)
            for packet in picture.encode(None):
                out.mux(packet)
"""

_PRIMING_CASE = (
    _ENCODER
    + r"""
import json, sys
from pathlib import Path
from mdivicom_sync_audio.io import read_audio, write_wav

rate = 48000
sound = np.random.default_rng(4).standard_normal(rate * 3).astype(np.float32) * 0.2
folder = Path(sys.argv[1])
write_wav(folder / "same.wav", rate, sound)


def write(name, kind, codec, **how):
    encode(folder / name, kind, codec, sound, rate, **how)


write("raw.aac", "adts", "aac")
write("unmarked.mp4", "mp4", "aac")
write("camera.ts", "mpegts", "aac")
write("camera.mkv", "matroska", "aac", timed=True)
write("untagged.mp3", "mp3", "libmp3lame", options={"write_xing": "0"})
write("tagged.mp3", "mp3", "libmp3lame")
write("layer2.ts", "mpegts", "mp2")
write("ac3.ts", "mpegts", "ac3")
write("camera-mp3.avi", "avi", "libmp3lame", timed=True, video=True)
write("camera-aac.ts", "mpegts", "aac", timed=True, video=True)
write("camera-ac3.mts", "mpegts", "ac3", timed=True, video=True)
wav = read_audio(folder / "same.wav", rate).samples.astype(float)
found = {}
for path in sorted(folder.iterdir()):
    if path.name == "same.wav":
        continue
    audio = read_audio(path, rate)
    score = np.correlate(audio.samples[: rate].astype(float), wav[2048 : rate - 2048], "valid")
    late = int(np.argmax(score)) - 2048  # samples: where the recording's first one is
    # where the file's first video frame is, on the audio's time (None: no video)
    video = audio.video[0]["start_s"] if audio.video else None
    found[path.name] = [audio.start_s + late / rate, video, audio.priming_dropped, audio.codec]
print(json.dumps(found))
"""
)


_LATE_VIDEO_CASE = (
    _ENCODER
    + r"""
import io, json, sys
from pathlib import Path
from PIL import Image
from mdivicom_sync_audio.io import read_audio
from mdivicom_sync_audio.run import _entry

rate = 48000
folder = Path(sys.argv[1])
sound = np.random.default_rng(5).standard_normal(rate * 24).astype(np.float32) * 0.2
for name, kind, seconds in (("late.ts", "mpegts", 24), ("early.ts", "mpegts", 3)):
    # every audio packet written before the first video one: FFmpeg's probe of the
    # 24-s file meets no video frame
    encode(folder / name, kind, "aac", sound[: rate * seconds], rate, timed=True, video=True)
encode(folder / "plain.mp3", "mp3", "libmp3lame", sound[: rate * 3], rate)
# the same MP3 with cover art, which FFmpeg lists as a video track
with av.open(str(folder / "plain.mp3")) as source, av.open(
    str(folder / "cover.mp3"), "w", format="mp3"
) as out:
    track = out.add_stream_from_template(source.streams.audio[0])
    art = out.add_stream("png")
    art.width, art.height, art.pix_fmt = 32, 32, "rgb24"
    art.disposition = 1024  # an attached picture
    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, "PNG")
    picture = av.Packet(png.getvalue())
    picture.stream, picture.pts, picture.dts = art, 0, 0
    out.mux(picture)
    for packet in source.demux(source.streams.audio[0]):
        if packet.dts is not None:
            packet.stream = track
            out.mux(packet)
found = {}
for name in ("late.ts", "early.ts", "cover.mp3"):
    audio = read_audio(folder / name, 8000)
    found[name] = [_entry(audio, 2.0, None, 0.1, None, "ok")["video"], audio.priming_dropped]
print(json.dumps(found))
"""
)


def test_a_video_track_the_probe_missed_is_timed_by_its_first_frames(installed, tmp_path):
    """An MPEG-TS file whose video starts late in the file (after seconds of audio,
    so FFmpeg's probe meets no frame of it) had FFmpeg's fallbacks for its video:
    the track's 90 kHz clock as its `fps` (the first frame at frame 180000) and 0 as
    its start, which also made its AAC start delay look unaccounted for (dropped:
    the audio 21.3 ms early). Its first frames now give both, as a probe that met
    them does; and an MP3's cover art is no video track (it was one, at 90000 fps)."""
    found = _run_case(_LATE_VIDEO_CASE, installed, str(tmp_path))
    assert found["late.ts"] == found["early.ts"], found
    [[video], dropped] = found["late.ts"]
    assert video == {
        "index": 1,
        "fps": 25.0,
        "start_s": 0.021333,  # the muxer started the audio its codec delay ahead
        "offset_s": 2.021333,
        "offset_frames": 50.533,
    }, found
    assert dropped == 0, found
    assert found["cover.mp3"][0] == [], found


_CUT_SHORT_CASE = (
    _ENCODER
    + r"""
import json, sys
from pathlib import Path
from mdivicom_sync_audio.io import read_audio, write_wav

rate = 48000
folder = Path(sys.argv[1])
sound = np.random.default_rng(6).standard_normal(rate * 12).astype(np.float32) * 0.2
write_wav(folder / "rec.wav", rate, sound)
encode(folder / "rec.flac", "flac", "flac", sound, rate)
encode(folder / "rec.mkv", "matroska", "flac", sound, rate, timed=True)
# the index at the start (as cameras that stream to the card write it), then the media
encode(folder / "C0001.MP4", "mp4", "aac", sound, rate, options={"movflags": "faststart"})
found = {}
for path in sorted(folder.iterdir()):
    whole = read_audio(path, 8000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short
    half = read_audio(path, 8000)
    found[path.name] = [whole.notes, round(half.duration_s), half.notes[-1:]]
print(json.dumps(found))
"""
)


def test_a_file_cut_short_says_the_rest_of_the_recording_is_missing(installed, tmp_path):
    """A copy that stopped halfway (a WAV, a FLAC, a Matroska file, an MP4 with its
    index first) was read up to where its data stops and synced on that, the rest
    of the recording missing without a word (or with `1 damaged audio packet`);
    the file's header gives its whole length, and a warning now says it was cut."""
    found = _run_case(_CUT_SHORT_CASE, installed, str(tmp_path))
    for name, (whole_notes, seconds, notes) in found.items():
        assert whole_notes == [], found
        assert 5 <= seconds <= 7, found
        [note] = notes or [""]
        assert note.startswith(f"{name}: its audio ends at "), found
        assert note.endswith(
            " s, but the file's header gives 12.0 s: the file was cut short (a copy or a "
            "transfer that did not finish?), and the rest of the recording is not synced: "
            "copy it again if its source still has it"
        ), found
    assert sorted(found) == ["C0001.MP4", "rec.flac", "rec.mkv", "rec.wav"], found


_LATE_AUDIO_CASE = r"""
import fractions, json, sys
from pathlib import Path
import av
import numpy as np
from mdivicom_sync_audio.io import read_audio

rate = 48000
sound = np.random.default_rng(7).standard_normal(rate * 4).astype(np.float32) * 0.2
found = {}
for kind, suffix in (("mp4", "mp4"), ("mpegts", "ts")):
    for late in (0, rate // 2):  # the audio with the video, and half a second after it
        path = Path(sys.argv[1]) / f"late{late}.{suffix}"
        with av.open(str(path), "w", format=kind) as out:
            audio = out.add_stream("aac", rate=rate)
            audio.layout = "mono"
            video = out.add_stream("mpeg4", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
            packets = []
            for start in range(0, len(sound), 1024):
                frame = av.AudioFrame.from_ndarray(
                    sound[None, start : start + 1024], format="fltp", layout="mono"
                )
                frame.rate, frame.time_base = rate, fractions.Fraction(1, rate)
                frame.pts = late + start
                packets += audio.encode(frame)
            packets += audio.encode(None)
            for index in range(4 * 25 + 13):
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                image.pts = index
                packets += video.encode(image)
            packets += video.encode(None)
            packets.sort(key=lambda packet: float(packet.dts * packet.time_base))
            for packet in packets:
                out.mux(packet)
        read = read_audio(path, 8000)
        found[path.name] = [read.priming_dropped, read.notes]
print(json.dumps(found))
"""


def test_a_delay_dropped_from_audio_that_starts_after_its_video_is_a_warning(installed, tmp_path):
    """An MP4 or MPEG-TS file whose AAC audio starts half a second after its video (as
    FFmpeg writes a screen or webcam recording whose microphone started late) had
    its start delay dropped as a camera leaves it, with nothing said: FFmpeg puts
    the delay before the sound's time, so the offset came out 21.3 ms off with a
    bound of 0.12 ms. The file does not say which, and the warning now does."""
    found = _run_case(_LATE_AUDIO_CASE, installed, str(tmp_path))
    for suffix in ("mp4", "ts"):
        assert found[f"late0.{suffix}"][1] == [], found
        dropped, notes = found[f"late24000.{suffix}"]
        assert dropped == 1024, found
        [note] = notes or [""]
        assert note.startswith(f"late24000.{suffix}: its audio starts 0.47"), found
        assert note.endswith(
            " s after its video, so the file does not say whether the 1024 samples (21.3 "
            "ms) aac puts first come before that time, as FFmpeg writes them (OBS, screen "
            "recorders, conversions), or from it, as cameras write them: they were taken "
            "as a camera's; if FFmpeg wrote the file, its sound is placed 21.3 ms early"
        ), found


_FLOAT_WAV_CASE = r"""
import json, sys, wave
import av
import numpy as np

# a 32-bit float WAV of a recorder's PCM file, with values that are no sound in it
# (argv[3] "nan") or at a gain
with wave.open(sys.argv[1]) as handle:
    rate = handle.getframerate()
    sound = np.frombuffer(handle.readframes(handle.getnframes()), "<i2") / 32768
sound = sound.astype(np.float32)
if sys.argv[3] == "nan":
    sound[2 * rate : 2 * rate + 10] = np.nan
    sound[5 * rate] = np.inf
else:  # a gain
    sound *= float(sys.argv[3])
with av.open(sys.argv[2], "w", format="wav") as out:
    track = out.add_stream("pcm_f32le", rate=rate, layout="mono")
    for start in range(0, len(sound), 1024):
        block = sound[None, start : start + 1024]
        frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
        frame.rate = rate
        for packet in track.encode(frame):
            out.mux(packet)
print(json.dumps({}))
"""


def test_values_that_are_not_numbers_in_a_float_recording_are_silence(installed, tmp_path):
    """A float WAV with a few NaN and infinite values (a recorder's or a converter's
    fault) made every correlation over them NaN: a 12-s recording 1 s after the
    reference came out -9.98 s, `doubtful`. They are
    silence now, with a warning, and the offset is right."""
    scene = _scene(20, seed=14)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(tmp_path / "rec.wav", _cut(scene, 1, 12))
    (session / "raw/audio/str-rec").mkdir(parents=True)
    floats = session / "raw/audio/str-rec/rec.wav"
    _run_case(_FLOAT_WAV_CASE, installed, str(tmp_path / "rec.wav"), str(floats), "nan")
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    found = _map(tmp_path / "out", "", "str-rec")
    assert found["status"] == "ok" and abs(found["offset_s"] - 1.0) < 0.001, found
    [warning] = _record(tmp_path / "out", "")["warnings"]
    assert warning.startswith(
        "str-rec: rec.wav: its audio holds values that are not numbers (NaN or infinite: a "
        "fault of the recorder or of a conversion), 0.00"
    ), warning
    first_s = float(warning.split(" the first at ")[1].split(" s")[0])
    assert 1.95 <= first_s <= 2.0, warning  # the resampler's filter spreads them a little
    assert warning.endswith(" s: silence is in their place"), warning


def test_a_quiet_recording_called_silent_gives_its_level(installed, tmp_path):
    """A float recorder's take 110 dB down, sound in it, failed as `silent, nothing
    to sync on`, which a user who hears it when raised cannot make sense of; the
    failure now gives its level and the one taken as silence, and raised it syncs."""
    scene = _scene(20, seed=14)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 16))
    _write(tmp_path / "rec.wav", _cut(scene, 1, 12))
    (session / "raw/audio/str-rec").mkdir(parents=True)
    floats = session / "raw/audio/str-rec/rec.wav"
    said = {}
    for gain, out in (("1e-4", "quiet"), ("1e-2", "raised")):
        _run_case(_FLOAT_WAV_CASE, installed, str(tmp_path / "rec.wav"), str(floats), gain)
        result = _run(installed, session, tmp_path / out)
        said[out] = result
    assert said["quiet"].returncode == 1, said["quiet"].stdout
    [error] = [line for line in said["quiet"].stdout.splitlines() if line.startswith("error:")]
    assert error.endswith(
        "str-rec: rec.wav is silent, nothing to sync on (its level is -112 dBFS rms, under "
        "the -100 dBFS taken as silence: a recording that holds sound can be raised, e.g. "
        "normalised, to sync it)"
    ), error
    assert said["raised"].returncode == 0, said["raised"].stdout
    assert abs(_map(tmp_path / "raised", "", "str-rec")["offset_s"] - 1.0) < 0.001


def test_a_codec_start_delay_is_dropped_wherever_nothing_accounts_for_it(installed, tmp_path):
    """Lossy codecs put samples before the recording's first one: AAC 1024, MP3 1105,
    MPEG layer II 481, AC-3 256. A file can account for them (an edit list, an MP3's LAME
    tag, a muxer that starts the audio that much ahead of its video); where none does
    they are dropped, so each file has the recording's first sound where a WAV of it
    has it and, in a camera file, at its first video frame, not 5-23 ms late."""
    found = _run_case(_PRIMING_CASE, installed, str(tmp_path))
    dropped = {name: row[2] for name, row in found.items()}
    assert dropped == {
        "raw.aac": 1024,
        "unmarked.mp4": 1024,
        "camera.ts": 1024,
        # the muxer put the delay before time zero: FFmpeg 8 (PyAV 18) drops it itself,
        # from an older FFmpeg's Matroska file it is dropped here, as its timestamps say
        "camera.mkv": dropped["camera.mkv"] if dropped["camera.mkv"] in (0, 1024) else "0/1024",
        "untagged.mp3": 1105,
        "tagged.mp3": 0,  # FFmpeg drops what the LAME tag says
        "layer2.ts": 481,  # MPEG-TS says "MPEG audio": the frames' header says layer II
        "ac3.ts": 256,
        "camera-mp3.avi": 1105,  # AVI starts audio and video together
        "camera-aac.ts": 0,  # the audio starts the delay ahead of the video
        "camera-ac3.mts": 0,
    }, found
    for name, (sound_s, video_s, _, codec) in found.items():
        if video_s is None:
            assert abs(sound_s) < 0.5 / 48000, (name, codec, sound_s)
        else:
            assert abs(sound_s - video_s) < 0.5 / 48000, (name, codec, sound_s, video_s)


_DAMAGED_CASE = r"""
import json, sys
from pathlib import Path
import av
import numpy as np
from mdivicom_sync_audio.io import read_audio, write_mp4, write_wav
from mdivicom_sync_audio.run import run

rate = 48000
sound = np.random.default_rng(5).standard_normal(rate * 12).astype(np.float32) * 0.2
session = Path(sys.argv[1]) / "ses-01"
recorder = session / "raw/audio/str-a/recorder.wav"
camera = session / "raw/video/str-b/C0042.MP4"
recorder.parent.mkdir(parents=True)
camera.parent.mkdir(parents=True)
write_wav(recorder, rate, sound)
write_mp4(camera, rate, sound[rate * 2 :], mark_priming=True)  # starts 2 s into the recording
# a bad card sector: one AAC packet about 5 s in, overwritten with zeros
with av.open(str(camera)) as container:
    stream = container.streams.audio[0]
    spot = next(
        (packet.pos, packet.size)
        for packet in container.demux(stream)
        if packet.pts is not None and packet.pts * stream.time_base >= 5
    )
data = bytearray(camera.read_bytes())
data[spot[0] : spot[0] + spot[1]] = bytes(spot[1])
camera.write_bytes(bytes(data))
audio = read_audio(camera, rate)
wav = read_audio(recorder, rate).samples.astype(float)
after = audio.samples[rate * 6 : rate * 7].astype(float)  # a second after the damage
score = np.correlate(wav[rate * 8 - 100 : rate * 9 + 100], after, "valid")
result = run(str(session), str(Path(sys.argv[1]) / "out"), {})
print(json.dumps({
    "undecodable": audio.undecodable,
    "gaps": audio.gaps,
    "duration": audio.duration_s,
    "late_after": int(np.argmax(score)) - 100,
    "offset": result["offsets_s"]["str-b"],
    "warnings": result["warnings"],
}))
"""


def test_a_damaged_packet_costs_its_own_time_only(installed, tmp_path):
    """A camera file with one packet the decoder refuses (a bad card sector) is read
    on: that packet's 21 ms become silence at its own time, everything after stays
    where its timestamps put it, the stream is synced, and the run warns, naming
    the file and the time (before, the whole recording failed)."""
    found = _run_case(_DAMAGED_CASE, installed, str(tmp_path))
    [at] = found["undecodable"]
    assert 5.0 <= at < 5.03, found
    assert [round(length, 4) for _, length in found["gaps"]] == [round(1024 / 48000, 4)], found
    assert abs(found["duration"] - 10.0) < 0.05, found
    assert found["late_after"] == 0, found
    assert abs(found["offset"] - 2.0) < 0.0005, found
    assert any(
        "C0042.MP4 could not be decoded" in w and f"{at:.3f} s" in w for w in found["warnings"]
    ), found["warnings"]


_SHORT_HEADER_CASE = r"""
import json, struct, sys
from pathlib import Path
import numpy as np
from mdivicom_sync_audio.run import run
from mdivicom_sync_audio.io import write_wav

rate = 16000
sound = np.random.default_rng(6).standard_normal(rate * 60) * 0.2
session = Path(sys.argv[1]) / "ses-01"
recorder = session / "raw/audio/str-a/recorder.wav"
camera = session / "raw/audio/str-b/camera.wav"
for path in (recorder, camera):
    path.parent.mkdir(parents=True)
write_wav(recorder, rate, sound)
write_wav(camera, rate, sound[rate * 3 :])  # 57 s, starting 3 s into the recording
# its header says 10 s, as a size field that wrapped past 4 GiB would say far too little
data = bytearray(camera.read_bytes())
at = data.index(b"data")
data[at + 4 : at + 8] = struct.pack("<I", 10 * rate * 2)
camera.write_bytes(bytes(data))
result = run(str(session), str(Path(sys.argv[1]) / "out"), {})
reports = Path(sys.argv[1]) / "out/dataset/derived/sync/reports"
report = json.loads((reports / "sync_audio.json").read_text())
print(json.dumps({
    "duration": report["streams"]["str-b"]["audio"]["duration_s"],
    "offset": result["offsets_s"]["str-b"],
    "warnings": result["warnings"],
}))
"""


def test_a_wav_whose_header_says_too_little_is_read_to_its_end(installed, tmp_path):
    """FFmpeg reads a WAV as far as its header says: a size field that wrapped past
    4 GiB (a long recording written without RF64) or that a recorder never updated
    would leave the rest unread without a word. A PCM WAV holding more than twice
    what its header says is read to its end, and the run says so."""
    found = _run_case(_SHORT_HEADER_CASE, installed, str(tmp_path))
    assert abs(found["duration"] - 57.0) < 0.01, found
    assert abs(found["offset"] - 3.0) < 0.0005, found
    assert any(
        "camera.wav: its WAV header gives 10.0 s of audio but the file holds 57.0 s" in w
        for w in found["warnings"]
    ), found["warnings"]


_TRACKS_CASE = r"""
import json, sys
from pathlib import Path
import av
import numpy as np
from mdivicom_sync_audio.io import MediaError, read_audio, write_wav

rate = 48000
path = Path(sys.argv[1]) / "phone.mov"
sound = np.random.default_rng(7).standard_normal((1, rate * 3)).astype(np.float32) * 0.2
with av.open(str(path), "w") as out:
    tracks = [out.add_stream("aac", rate=rate) for _ in range(2)]
    for track in tracks:
        track.layout = "mono"
    for start in range(0, rate * 3, 1024):
        for track in tracks:
            block = sound[:, start : start + 1024]
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.rate = rate
            for packet in track.encode(frame):
                out.mux(packet)
    for track in tracks:
        for packet in track.encode(None):
            out.mux(packet)
# the first track unreadable: every packet of it overwritten with zeros
with av.open(str(path)) as container:
    spots = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size]
data = bytearray(path.read_bytes())
for pos, size in spots:
    data[pos : pos + size] = bytes(size)
path.write_bytes(bytes(data))
found = {}
try:
    read_audio(path, 8000)
except MediaError as error:
    found["error"] = str(error)
found["second"] = read_audio(path, 8000, track=1).duration_s
# and as a session's camera, beside a recorder's WAV
session = Path(sys.argv[1]) / "ses-01"
(session / "raw/video/str-cam2").mkdir(parents=True)
path.rename(session / "raw/video/str-cam2/phone.mov")
(session / "raw/audio/str-cam1").mkdir(parents=True)
write_wav(session / "raw/audio/str-cam1/recorder.wav", rate, sound[0])
print(json.dumps(found))
"""


def test_an_unreadable_track_names_the_file_s_other_tracks(installed, tmp_path):
    """A track FFmpeg cannot decode (a codec it has no decoder for, a damaged one) is
    an error, exit 1, that says how to read the file's other audio track instead."""
    found = _run_case(_TRACKS_CASE, installed, str(tmp_path))
    assert "phone.mov: " in found["error"] and "cannot be decoded" in found["error"], found
    assert found["error"].endswith("; it has 2 audio tracks"), found
    assert abs(found["second"] - 3.0) < 0.05, found
    session = tmp_path / "ses-01"
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr  # the plugin failed
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert "str-cam2/phone.mov: " in error, error
    assert error.endswith(
        "it has 2 audio tracks: --set audio_track.str-cam2=1 reads track 1 of this stream alone"
    ), error
    # as the hint says: track 1 of the camera, beside the recorder's one-track WAV
    result = _run(installed, session, tmp_path / "out2", "--set", "audio_track.str-cam2=1")
    assert result.returncode == 0, result.stdout + result.stderr
    cam2, cam1 = _map(tmp_path / "out2", "", "str-cam2"), _map(tmp_path / "out2", "", "str-cam1")
    assert (cam2["audio"]["track"], cam2["audio"]["tracks"]) == (1, 2), cam2["audio"]
    assert (cam1["audio"]["track"], cam1["audio"]["tracks"]) == (0, 1), cam1["audio"]
    assert abs(cam2["offset_s"]) < 0.0005, cam2
    # one number is every stream's: the one-track WAV has no track 1
    result = _run(installed, session, tmp_path / "out3", "--set", "audio_track=1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "recorder.wav: audio_track 1 asked, but the file has 1 audio track(s), numbered from 0: "
        "audio_track=1 is every stream's; give it per stream instead, e.g. "
        "--set audio_track.<stream>=1 for one stream's file alone" in result.stdout
    ), result.stdout
    # a stream the session does not have is named, with the ones it has
    result = _run(installed, session, tmp_path / "out4", "--set", "audio_track.str-cam9=1")
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert error.endswith(
        "audio_track names str-cam9, not a stream of this session (its streams: str-cam1, str-cam2)"
    ), error
    # a key that is no stream id at all is refused before the run, by the config schema
    result = _run(installed, session, tmp_path / "out5", "--set", "audio_track.cam2=1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "config.audio_track: 'cam2' does not match '^str-'" in result.stderr, result.stderr


_FUZZ_CASE = (
    _ENCODER
    + r"""
import json, sys
from pathlib import Path
from mdivicom_sync_audio.io import MediaError, read_audio

rate = 48000
folder = Path(sys.argv[1])
sound = np.random.default_rng(8).standard_normal(rate * 4).astype(np.float32) * 0.2
files = []
for name, kind, codec in (
    ("camera.mp4", "mp4", "aac"),
    ("recorder.flac", "flac", "flac"),
    ("phone.mp3", "mp3", "libmp3lame"),
    ("voice.ogg", "ogg", "libopus"),
    ("camera.mts", "mpegts", "ac3"),
):
    encode(folder / name, kind, codec, sound, rate)
    files.append(folder / name)
outcomes = []
for path in files:
    original = path.read_bytes()
    for trial in range(12):
        rng = np.random.default_rng(trial)
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 8))):  # a few damaged spots, anywhere
            at, size = int(rng.integers(0, len(data) - 64)), int(rng.integers(1, 64))
            data[at : at + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        damaged = folder / f"damaged{path.suffix}"
        damaged.write_bytes(bytes(data))
        try:
            read_audio(damaged, 8000)
            outcomes.append([path.name, "read"])
        except MediaError as error:
            outcomes.append([path.name, "MediaError" if str(damaged) in str(error) else str(error)])
        except Exception as error:  # what a user would see as an internal error
            outcomes.append([path.name, f"{type(error).__name__}: {error}"])
print(json.dumps(outcomes))
"""
)


def test_damaged_files_are_read_or_refused_naming_them(installed, tmp_path):
    """Five common formats, each damaged at a few random spots twelve times: every
    file is either read (damaged packets passed over) or refused with an error that
    names it; none ends in an exception the user would see as an internal error."""
    outcomes = _run_case(_FUZZ_CASE, installed, str(tmp_path))
    unexpected = [(name, what) for name, what in outcomes if what not in ("read", "MediaError")]
    assert not unexpected, unexpected
    # damage costs its own packets only: 59 of 60 are read (0.3.13 refused 28, every
    # damaged AAC or MP3 packet failing its whole file); the refused one is an Ogg file
    # whose headers were hit
    read = [name for name, what in outcomes if what == "read"]
    assert len(read) >= 50, outcomes
    assert set(read) == {"camera.mp4", "recorder.flac", "phone.mp3", "voice.ogg", "camera.mts"}


_JOINED_CASE = r"""
import fractions, json, sys
from pathlib import Path
import av
import numpy as np
from mdivicom_sync_audio.io import MediaError, read_audio

folder = Path(sys.argv[1])
def part(path, layout, rate, start_s):
    channels = 2 if layout == "stereo" else 1
    sound = np.random.default_rng(1).standard_normal((channels, rate * 2)) * 0.2
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mp2", rate=rate)
        stream.layout = layout
        for start in range(0, rate * 2, 1152):
            block = (sound[:, start : start + 1152].T.reshape(1, -1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            frame.rate, frame.time_base = rate, fractions.Fraction(1, rate)
            frame.pts = round(start_s * rate) + start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()
found = {}
# MPEG-TS files join by concatenation; the second recording is stereo at another rate
first = part(folder / "a.ts", "mono", 48000, 0.0)
(folder / "goes-on.ts").write_bytes(first + part(folder / "b.ts", "stereo", 44100, 2.0))
(folder / "restarts.ts").write_bytes(first + part(folder / "c.ts", "stereo", 44100, 0.0))
audio = read_audio(folder / "goes-on.ts", 8000)
found["goes_on"] = [audio.duration_s, audio.gaps]
try:
    read_audio(folder / "restarts.ts", 8000)
except MediaError as error:
    found["restarts"] = str(error)
print(json.dumps(found))
"""


def test_a_track_that_changes_rate_and_channels_midway_is_read_on(installed, tmp_path):
    """One resampler takes one rate and channel layout: a camera file joined from two
    recordings (MPEG-TS joins by concatenation) read on its second part at its own
    rate and layout, in place; when the second part's clock starts again from zero
    it cannot be placed, and the error names the file and the time."""
    found = _run_case(_JOINED_CASE, installed, str(tmp_path))
    seconds, gaps = found["goes_on"]
    assert abs(seconds - 4.0) < 0.03, found
    # the first part's last frame is padded past 2.0 s: that much is dropped again
    (at_s, length_s), *more = gaps
    assert not more and 2.0 < at_s < 2.03 and -0.03 < length_s < 0, found
    assert "restarts.ts: its audio timestamps jump -2.0" in found["restarts"], found
    assert found["restarts"].endswith("cannot be placed in time: split it there"), found


_GAPPED_FILE = r"""
import fractions, sys
import av
import numpy as np
# a camera file whose audio drops packets: the samples in each gap never reach
# the file, and its timestamps jump over them (as a busy capture card leaves them)
path, rate, codec = sys.argv[1], int(sys.argv[2]), sys.argv[3]
samples = np.load(sys.argv[4])
gaps = [(float(a), float(b)) for a, b in (g.split(":") for g in sys.argv[5:])]
data = (samples / np.abs(samples).max() * 0.89).astype(np.float32)
with av.open(path, "w", format="matroska") as out:
    stream = out.add_stream(codec, rate=rate)
    stream.layout = "mono"
    for start in range(0, len(data), 1024):
        if any(at <= start / rate < at + length for at, length in gaps):
            continue
        block = data[None, start : start + 1024]
        if codec == "pcm_s16le":
            block, kind = (block * 32767).astype(np.int16), "s16"
        else:
            kind = "fltp"
        frame = av.AudioFrame.from_ndarray(block, format=kind, layout="mono")
        frame.rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
"""


def test_audio_that_drops_packets_keeps_its_timestamps(installed, tmp_path):
    """A camera file whose audio lost 0.26 s at 5 s (its timestamps jump over the
    gap) is synced on the container's time: laid end to end, everything after the
    gap was 0.26 s early and the offset came out 256 ms off, status ok. The gap is
    filled with silence and reported. The same recording written a second time
    beside it (AAC, in a file of its own) is synced on its own too."""
    import numpy as np

    scene = _scene(45, seed=8)
    session = tmp_path / "ses-gap"
    _write(session / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 40))
    camera = session / "raw/video/str-cam2"
    camera.mkdir(parents=True)
    np.save(tmp_path / "cam2.npy", _cut(scene, 5, 30))
    # a camera that splits its recordings into chapter files names them like this
    for name, codec in (("GX010042.mkv", "pcm_s16le"), ("GX020042.mkv", "aac")):
        subprocess.run(
            [
                *(sys.executable, "-c", _GAPPED_FILE, str(camera / name), str(CASE_RATE)),
                *(codec, str(tmp_path / "cam2.npy"), "5.0:0.3"),  # 0.3 s lost from 5 s
            ],
            env=installed,
            check=True,
        )
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    found = _map(tmp_path, "out", "str-cam2")
    assert abs(found["offset_s"] - 5.0) * 1000 < 0.5, found
    assert found["status"] == "ok" and abs(found["drift_ppm"]) < 5, found
    # whole 1024-sample packets were dropped: from 5.056 s, four of them
    assert found["audio"]["file"] == "GX010042.mkv"
    assert found["audio"]["gaps"] == [{"at_s": 5.056, "length_s": 0.256}], found["audio"]
    assert found["audio"]["gap_count"] == 1
    first, second = found["files"]
    assert all(found[key] == value for key, value in first.items()), found  # the first's at top
    assert second["audio"]["file"] == "GX020042.mkv" and second["audio"]["gap_count"] == 1
    assert abs(second["offset_s"] - 5.0) * 1000 < 0.5, second
    assert _record(tmp_path, "out")["warnings"] == []


def test_each_file_of_a_stream_is_synced_on_its_own(installed, tmp_path):
    """A camera that splits a long recording into chapter files: each file is
    synced on its own (its own offset, drift and bound), also the reference
    stream's second file, which has no sound in common with the first and is
    placed through the other streams. The map of a stream of several files
    keeps the first file's result at its top, with the whole stream's status,
    and lists every file's."""
    scene = _scene(100, seed=12)
    session = tmp_path / "ses-chapters"
    _cuts(
        session,
        scene,
        {
            "str-cam1/C0001.wav": (0, 50),  # the reference
            "str-cam1/C0002.wav": (50, 50),
            "str-cam2/GX010042.wav": (5, 50),
            "str-cam2/GX020042.wav": (55, 42),
            "str-cam3/cam3.wav": (10, 80),
        },
    )
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    truth = {
        "str-cam1": [0.0, 50.0],
        "str-cam2": [5.0, 55.0],
        "str-cam3": [10.0],
    }
    for stream, offsets in truth.items():
        found = _map(tmp_path, "out", stream)
        files = found.get("files", [found])
        assert [f["audio"]["file"] for f in files] == sorted(
            p.name for p in (session / "raw/audio" / stream).iterdir()
        )
        for entry, offset in zip(files, offsets, strict=True):
            assert abs(entry["offset_s"] - offset) * 1000 < 0.5, (stream, entry)
        assert found["offset_s"] == files[0]["offset_s"]
    cam1 = _map(tmp_path, "out", "str-cam1")
    assert cam1["files"][0]["status"] == "reference"
    assert cam1["status"] == "reference", cam1  # every file fine: the first file's
    assert cam1["files"][1]["status"] == "ok" and cam1["files"][1]["via"], cam1["files"][1]
    record = _record(tmp_path, "out")
    assert record["status"] == "succeeded", record
    offsets = record["result"]["offsets_s"]
    assert set(offsets) == {
        "str-cam1/C0001.wav",
        "str-cam1/C0002.wav",
        "str-cam2/GX010042.wav",
        "str-cam2/GX020042.wav",
        "str-cam3",
    }, offsets
    markers = (
        (tmp_path / "out/sync-audio/dataset/derived/sync/sync_markers.tsv").read_text().splitlines()
    )
    assert any(line.split("\t")[3] == "xcorr-peak:GX020042.wav" for line in markers), markers


# two cameras started 1.5 s apart, each cutting its chapter about 50 s in
CUT_TOGETHER = {
    "str-cam1/C0001.wav": (0, 50),  # the reference
    "str-cam1/C0002.wav": (50, 50),
    "str-cam2/GX010042.wav": (1.5, 49),
    "str-cam2/GX020042.wav": (50.5, 45),
}


def test_chapters_cut_together_are_placed_end_to_end_and_say_so(installed, tmp_path):
    """Cameras started together cut their chapters at nearly the same moments: a
    second chapter then shares at most a second with any first one, and its pairs
    with them found chance peaks (reused speech: files placed 16-1763 s off).
    Each camera's files are placed end to end instead, the second chapters aligned
    among themselves, and each says its place rests on that cut."""
    scene = _scene(100, seed=14)
    session = tmp_path / "ses-cut-together"
    _cuts(session, scene, CUT_TOGETHER)
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    maps = {stream: _map(tmp_path, "out", stream) for stream in ("str-cam1", "str-cam2")}
    cam1, cam2 = (maps[stream]["files"] for stream in ("str-cam1", "str-cam2"))
    assert abs(cam2[0]["offset_s"] - 1.5) * 1000 < 0.5 and cam2[0]["status"] == "ok", cam2[0]
    # a reader of the top alone learns that a later file is doubtful
    assert maps["str-cam2"]["status"] == "doubtful", maps["str-cam2"]
    assert maps["str-cam2"]["offset_s"] == cam2[0]["offset_s"]
    for entry, offset in ((cam1[1], 50.0), (cam2[1], 50.5)):
        assert abs(entry["offset_s"] - offset) * 1000 < 0.5, entry
        assert entry["status"] == "doubtful" and entry["end_to_end"], entry
        assert entry["error_bound_ms"] < 1, entry  # WAV: no sample is lost at a cut
    assert cam2[0]["end_to_end"] == []
    warnings = _record(tmp_path, "out")["warnings"]
    assert any(
        w.startswith("str-cam1/C0002.wav: offset +50.0000 s (+-")
        and "placed end to end with str-cam1/C0001.wav -> str-cam1/C0002.wav" in w
        and "not separate takes" in w
        for w in warnings
    ), warnings


def test_a_gopro_s_chapters_continue_their_recording_not_the_next_name(installed, tmp_path):
    """A GoPro names a recording's chapters GX010042, GX020042 and the next recording
    GX010043, so name order put recording 43 between 42's chapters: its second
    chapter, which the reference's sound does not reach, was placed end to end after
    recording 43 (12 s off). The chapters of one recording now follow each other."""
    scene = _scene(60, seed=15)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-rec/rec.wav", _cut(scene, 0, 24))
    _write(session / "raw/video/str-gopro/GX010042.MP4", _cut(scene, 2, 20))
    _write(session / "raw/video/str-gopro/GX020042.MP4", _cut(scene, 22, 15))
    _write(session / "raw/video/str-gopro/GX010043.MP4", _cut(scene, 45, 12))
    result = _run(installed, session, tmp_path / "out", "--set", "reference_stream=str-rec")
    assert result.returncode == 0, result.stdout + result.stderr
    files = {f["audio"]["file"]: f for f in _map(tmp_path / "out", "", "str-gopro")["files"]}
    assert list(files) == ["GX010042.MP4", "GX020042.MP4", "GX010043.MP4"], files
    assert abs(files["GX010042.MP4"]["offset_s"] - 2.0) < 0.001, files
    assert abs(files["GX020042.MP4"]["offset_s"] - 22.0) < 0.001, files
    assert files["GX020042.MP4"]["end_to_end"] == ["str-gopro/GX020042.MP4"], files


def test_a_chapter_after_one_copied_short_starts_where_that_recording_ended(installed, tmp_path):
    """A camera's first chapter copied short (its data stops halfway, its header gives
    20 s) laid the next chapter, which the reference's sound does not reach, end to
    end after the 10 s that were there: 10 s off, said only of the first chapter.
    It follows where the header says the recording ended."""
    scene = _scene(60, seed=15)
    session = tmp_path / "ses-01"
    _write(session / "raw/audio/str-rec/rec.wav", _cut(scene, 0, 24))
    first = session / "raw/video/str-gopro/GX010042.MP4"
    _write(first, _cut(scene, 2, 20))
    first.write_bytes(first.read_bytes()[: 44 + 10 * CASE_RATE * 2])  # 10 s of 20
    _write(session / "raw/video/str-gopro/GX020042.MP4", _cut(scene, 22, 15))
    result = _run(installed, session, tmp_path / "out", "--set", "reference_stream=str-rec")
    assert result.returncode == 0, result.stdout + result.stderr
    files = {f["audio"]["file"]: f for f in _map(tmp_path / "out", "", "str-gopro")["files"]}
    assert abs(files["GX010042.MP4"]["offset_s"] - 2.0) < 0.001, files
    assert files["GX010042.MP4"]["audio"]["duration_s"] == 10.0, files
    assert abs(files["GX020042.MP4"]["offset_s"] - 22.0) < 0.001, files
    [warning] = _record(tmp_path / "out", "")["warnings"][:1]
    assert warning.startswith("str-gopro/GX010042.MP4: GX010042.MP4: its audio ends at 10.0 s, "), (
        warning
    )


def test_continuous_chapters_trusts_the_cuts_unless_the_sound_contradicts_one(installed, tmp_path):
    """`--set continuous_chapters=true` is the user's word that each stream's files
    are one recording cut in parts: a file placed end to end is then `ok` when its
    bound allows, with its `end_to_end` kept. A camera's two takes with a pause
    between, both heard well, contradict that word: the later one is placed by its
    sound and warned; without the word they are two takes and nothing is said."""
    scene = _scene(100, seed=14)
    together = tmp_path / "ses-cut-together"
    _cuts(together, scene, CUT_TOGETHER)
    result = _run(installed, together, tmp_path / "out", "--set", "continuous_chapters=true")
    assert result.returncode == 0, result.stdout + result.stderr
    for stream, offsets in (("str-cam1", [0.0, 50.0]), ("str-cam2", [1.5, 50.5])):
        found = _map(tmp_path, "out", stream)
        assert found["status"] == ("reference" if stream == "str-cam1" else "ok"), found
        for entry, offset in zip(found["files"], offsets, strict=True):
            assert abs(entry["offset_s"] - offset) * 1000 < 0.5, entry
        assert found["files"][1]["end_to_end"], found  # still said, not warned
        assert found["files"][1]["status"] == "ok", found
    assert _record(tmp_path, "out")["warnings"] == []
    takes = tmp_path / "ses-takes"
    _cuts(
        takes,
        scene,
        {
            "str-cam1/cam1.wav": (0, 100),  # the reference
            "str-cam2/take1.wav": (5, 30),
            "str-cam2/take2.wav": (50, 40),  # 15 s after take 1 ended
        },
    )
    for out, extra in (("plain", ()), ("declared", ("--set", "continuous_chapters=true"))):
        result = _run(installed, takes, tmp_path / out, *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        first, second = _map(tmp_path, out, "str-cam2")["files"]
        for entry, offset in ((first, 5.0), (second, 50.0)):
            assert abs(entry["offset_s"] - offset) * 1000 < 0.5, entry
            assert entry["end_to_end"] == [], entry
        warnings = _record(tmp_path, out)["warnings"]
        if not extra:
            assert second["status"] == "ok" and warnings == [], warnings
            continue
        assert second["status"] == "doubtful", second
        assert warnings == [
            "str-cam2/take2.wav: continuous_chapters is set, but its sound puts it 15.000 s "
            "from the end of str-cam2/take1.wav: not one recording with it (separate "
            "takes?); it is placed by its sound"
        ], warnings


_AAC_FILES = r"""
import sys
from pathlib import Path
import numpy as np
from mdivicom_sync_audio.io import write_mp4
rate = int(sys.argv[1])
for path, samples in zip(sys.argv[2::2], sys.argv[3::2]):
    write_mp4(Path(path), rate, np.load(samples), mark_priming=True)
"""


def test_where_the_sound_reaches_a_chapter_a_cut_does_not_dispute_it(installed, tmp_path):
    """A camera lost a frame (64 ms) between its two AAC chapter files, within what
    a cut of a lossy codec can move a file by, so the cut stands as a link. The
    recorder hears both chapters: the second is placed by its sound, `ok`, and
    the cut's other place (64 ms early) does not widen its bound."""
    import numpy as np

    scene = _scene(100, seed=15)
    session = tmp_path / "ses-aac-chapters"
    _write(session / "raw/audio/str-cam1/recorder.wav", _cut(scene, 0, 100))
    camera = session / "raw/video/str-cam2"
    camera.mkdir(parents=True)
    files = []
    for name, start, seconds in (("GX010042.MP4", 5.0, 45.0), ("GX020042.MP4", 50.064, 44.0)):
        np.save(tmp_path / f"{name}.npy", _cut(scene, start, seconds))
        files += [str(camera / name), str(tmp_path / f"{name}.npy")]
    subprocess.run(
        [sys.executable, "-c", _AAC_FILES, str(CASE_RATE), *files], env=installed, check=True
    )
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = _map(tmp_path, "out", "str-cam2")["files"]
    for entry, offset in ((first, 5.0), (second, 50.064)):
        assert abs(entry["offset_s"] - offset) * 1000 < 0.5, entry
        assert entry["status"] == "ok" and entry["end_to_end"] == [], entry
        assert entry["error_bound_ms"] < 1, entry
    assert _record(tmp_path, "out")["warnings"] == []


def test_a_file_apart_from_the_reference_is_checked_against_another_stream(installed, tmp_path):
    """The continuity check looks for stretches a file's offset does not hold on by
    matching them against the reference; a file with no time in common with it
    (the reference camera's second chapter) would go unchecked. It is checked
    against the recording it shares most time with instead, and a loss of 0.1 s
    there is reported, naming that recording."""
    import numpy as np

    scene = _scene(100, seed=13)
    session = tmp_path / "ses-chapter-jump"
    _write(session / "raw/audio/str-cam1/C0001.wav", _cut(scene, 0, 50))  # the reference
    second = _cut(scene, 50, 50)
    cut = 30 * CASE_RATE  # 0.1 s of samples lost 30 s into the second chapter
    _write(
        session / "raw/audio/str-cam1/C0002.wav",
        np.concatenate([second[:cut], second[cut + CASE_RATE // 10 :]]),
    )
    _write(session / "raw/audio/str-cam2/cam2.wav", _cut(scene, 8, 92))
    result = _run(installed, session, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    cam1 = _map(tmp_path, "out", "str-cam1")
    chapter = cam1["files"][1]
    # the top says so too, not only the first file's `reference`
    assert cam1["status"] == "doubtful" and cam1["files"][0]["status"] == "reference", cam1
    assert abs(chapter["offset_s"] - 50.0) * 1000 < 0.5, chapter  # its larger part
    assert chapter["status"] == "doubtful" and chapter["jumps"], chapter
    assert all(abs(jump["by_ms"] - 100) < 1 for jump in chapter["jumps"]), chapter["jumps"]
    [warning] = _record(tmp_path, "out")["warnings"]
    assert warning.startswith("str-cam1/C0002.wav: from "), warning
    assert "the sound matches str-cam2 +100 ms from this offset" in warning, warning
    assert "(in this recording or str-cam2)" in warning, warning


def test_a_silent_reference_file_leaves_the_next_one_or_says_how_to_choose(installed, tmp_path):
    """A reference camera muted for its first chapter: its next file with sound is
    the reference and the muted one fails, named. A reference with no sound at all
    fails the run with how to align to another stream instead."""
    import numpy as np

    scene = _scene(80, seed=14)
    silence = np.zeros(30 * CASE_RATE)
    sessions = {
        "ses-muted": {
            "str-cam1/C0001.wav": silence,
            "str-cam1/C0002.wav": _cut(scene, 30, 50),
            "str-cam2/cam2.wav": _cut(scene, 35, 40),
        },
        "ses-silent-reference": {
            "str-cam1/cam1.wav": silence,
            "str-cam2/cam2.wav": _cut(scene, 0, 30),
            "str-cam3/cam3.wav": _cut(scene, 5, 30),
        },
    }
    for name, files in sessions.items():
        for path, samples in files.items():
            _write(tmp_path / name / "raw/audio" / path, samples)
    result = _run(installed, tmp_path / "ses-muted", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    cam1 = _map(tmp_path, "out", "str-cam1")
    muted, second = cam1["files"]
    assert muted["status"] == "failed" and "C0001.wav is silent" in muted["error"], muted
    assert cam1["status"] == "doubtful", cam1  # part of the stream failed, not all of it
    assert second["status"] == "reference", second
    assert abs(_map(tmp_path, "out", "str-cam2")["offset_s"] - 5.0) * 1000 < 0.5
    result = _run(installed, tmp_path / "ses-silent-reference", tmp_path / "out2")
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert error.endswith(
        "str-cam1: cam1.wav is silent, nothing to sync on: nothing can be synced to a silent "
        "reference; --set reference_stream=str-cam2 aligns to another stream"
    ), error


_CHAPTERS_CASE = r"""
import json
from pathlib import Path
import numpy as np
from mdivicom_sync_audio import network
from mdivicom_sync_audio.estimate import Result, SyncProblem
from mdivicom_sync_audio.io import Audio

def align(first, second, stream_id, max_lag_s):
    a, b = str(first.path), str(second.path)
    aligned.append([a, b])
    (a0, a_len), (b0, b_len) = places[a], places[b]
    common = min(a0 + a_len, b0 + b_len) - max(a0, b0)
    if common <= -30:
        raise SyncProblem(f"{stream_id}: no common sound found with the reference")
    if common < 10:  # a chance peak (reused speech): 7 s off, a loose bound
        return Result(b0 - a0 + 7.0, 0.0, 50.0, 1.0, 10.0, 8.0)
    if (name, a, b) in special:
        return special[name, a, b]
    return Result(b0 - a0, 0.0, 0.1, 1.0, 10.0, 20.0)  # t_first = t_second + offset

# answers that are not the plain truth: a short file's answer 6.88 ms off within
# 3.5 ms; a camera 100 ppm fast, its drift measured on its first chapter only (the
# second shares 13 s with the reference: its offset holds 6.5 s in, with no drift)
special = {
    ("short tail", "R/2", "A"): Result(-40 + 0.00688, 0.0, 3.5, 1.0, 10.0, 20.0),
    ("borrowed drift", "R", "A/1"): Result(0.0, 100.0, 0.1, 1.0, 40.0, 20.0),
    ("borrowed drift", "R", "A/2"): Result(
        (40 + 6.5) * (1 + 1e-4) - 6.5, None, 0.1, None, 13.0, 20.0, measured_at_s=6.5
    ),
}

network.align = align


def recording(node, seconds):  # a WAV's audio at 10 Hz (the fake align never looks)
    samples = np.zeros(int(seconds * 10), dtype=np.float16)
    return Audio(Path(node), 10, samples, 10, 1, "pcm_s16le", "wav", 0.0)


out = {}
# where each recording starts on the reference's clock, and how long it is (s)
for name, places in {
    "whole reference": {
        "ref": (0, 100), "A/1": (0, 40), "A/2": (40, 40), "B/1": (0, 35), "B/2": (35, 40),
    },
    # the reference is a camera's first chapter: its second, and B/3, meet it not
    "chapter reference": {
        "R/1": (0, 40), "R/2": (40, 40), "A": (0, 80), "B/1": (0, 30), "B/2": (30, 30),
        "B/3": (60, 20),
    },
    # the long recording listed last: the later chapters are paired with it first
    "recorder last": {
        "R/1": (0, 40), "R/2": (40, 40), "R/3": (80, 40), "B/1": (0, 30), "B/2": (30, 30),
        "B/3": (60, 18), "A": (0, 120),
    },
    # cameras of one make started together cut their chapters together: the second
    # chapters share no sound with any first one
    "cut together": {
        "R/1": (0, 40), "R/2": (40, 40), "A/1": (0.5, 40), "A/2": (40.5, 40),
        "B/1": (1, 40), "B/2": (41, 40),
    },
    # the same recording twice (a proxy, a second card): end to end it would follow
    # the first, sharing 5 s with the reference
    "written twice": {"ref": (0, 40), "A/1": (5, 30), "A/2": (5, 30)},
    # the reference's 10-s last chapter, whose sound puts it 6.88 ms off, within 3.5
    "short tail": {"R/1": (0, 40), "R/2": (40, 10), "A": (0, 50)},
    "borrowed drift": {"R": (0, 100), "A/1": (0, 40), "A/2": (40, 40)},
}.items():
    audio = {node: recording(node, n) for node, (_, n) in places.items()}
    aligned = []
    device = {node: node.split("/")[0] for node in places if "/" in node}
    reference = next(iter(places))
    solved, routes = network.solve(audio, reference, list(places), None, device)
    out[name] = {
        "aligned": sorted(aligned),
        "offsets": {node: getattr(found, "offset_s", None) for node, found in solved.items()},
        "end to end": {node: found.end_to_end for node, found in solved.items()},
        "not continuing": {
            node: found.not_continuing for node, found in solved.items() if found.not_continuing
        },
        "bounds": {node: found.error_bound_ms for node, found in solved.items()},
        "drifts": {node: found.drift_ppm for node, found in solved.items()},
        "reasons": {node: getattr(found, "bound_reason", None) for node, found in solved.items()},
    }
# the cuts the sound does not contradict: A/2 is heard where A/1's end would not
# put it (separate takes), B/2 where B/1's would, A/3 is not heard at all
Link = network.Link
heard = {
    node: Link(offset, 0.0, 0.1, 1.0, True)
    for node, offset in (("A/1", 5.0), ("A/2", 5.0), ("B/1", 2.0), ("B/2", 32.0))
}
seam = lambda a, b: Link(30.0, 0.0, 0.0, 0.0, True, cuts=((a, b),))
cuts = {(a, b): seam(a, b) for a, b in (("A/1", "A/2"), ("A/2", "A/3"), ("B/1", "B/2"))}
kept, broken = network._seams_kept(
    {"ref": heard, **{n: {} for n in ("A/1", "A/2", "A/3", "B/1", "B/2")}},
    "ref",
    cuts,
    {n: 15.0 for n in ("A/1", "A/2", "A/3", "B/1", "B/2")},
)
out["kept"] = sorted("-".join(cut) for cut in kept)
out["broken"] = {"-".join(cut): round(ms, 3) for cut, ms in broken.items()}
# a silent chapter between two is stepped over by its length (10 s, 5 s silent, 10 s)
files = {f"C/{k}": recording(f"C/{k}", n) for k, n in ((1, 10), (2, 5), (3, 10))}
over = network.seams(files, {node: "C" for node in files}, ["C/1", "C/3"])
out["over silence"] = {"-".join(k): [v.offset_s, list(map(list, v.cuts))] for k, v in over.items()}
# what a cut can move a file by: nothing for PCM and lossless codecs; a lossy
# codec's start delay and a frame
out["allowance"] = {
    f"{codec} {rate}": round(network.seam_allowance_ms(
        Audio(Path("x"), 10, np.zeros(1, dtype=np.float16), rate, 1, codec, "mp4", 0.0)
    ), 2)
    for codec, rate in (("pcm_s24le", 48000), ("flac", 48000), ("aac", 48000), ("mp3float", 44100))
}
print(json.dumps(out))
"""


def test_files_of_one_camera_are_not_paired_nor_are_files_placed_apart(installed):
    """One camera's files never overlap in time, so they are not paired with each
    other; nor are two files whose places against the reference share under 10 s
    (a correlation there finds a chance peak as easily as the true one, and a
    session's chapters would otherwise cost one alignment per pair of files). A
    camera's files are placed end to end as soon as one of them is placed."""
    found = _run_case(_CHAPTERS_CASE, installed)
    whole = found["whole reference"]
    assert whole["aligned"] == [
        ["A/1", "B/1"],
        ["A/2", "B/2"],
        ["ref", "A/1"],
        ["ref", "A/2"],
        ["ref", "B/1"],
        ["ref", "B/2"],
    ]  # not A/1-A/2, B/1-B/2 (one camera), A/2-B/1 (40-80 s and 0-35 s), A/1-B/2 (5 s)
    assert whole["offsets"] == {"A/1": 0.0, "A/2": 40.0, "B/1": 0.0, "B/2": 35.0}
    assert not any(whole["end to end"].values())  # the sound reaches every file
    # R/2 and B/3 are placed through A first; then R/2-B/1 (40-80 s, 0-30 s) and
    # R/1-B/3 (0-40 s, 60-80 s) are left out
    chapter = found["chapter reference"]
    assert chapter["aligned"] == [
        ["A", "B/1"],
        ["A", "B/2"],
        ["A", "B/3"],
        ["R/1", "A"],
        ["R/1", "B/1"],
        ["R/1", "B/2"],
        ["R/2", "A"],
        ["R/2", "B/2"],
        ["R/2", "B/3"],
    ]  # B/3 is placed through A (the longest placed recording) before R/1-B/3 comes up
    assert chapter["offsets"] == {"R/2": 40.0, "A": 0.0, "B/1": 0.0, "B/2": 30.0, "B/3": 60.0}
    # R/2 and R/3 are placed end to end with R/1, B/2 and B/3 with B/1 once A places
    # it; their places leave out every pair of files that share no time
    last = found["recorder last"]
    assert last["aligned"] == [
        ["B/1", "A"],
        ["B/2", "A"],
        ["B/3", "A"],
        ["R/1", "A"],
        ["R/1", "B/1"],
        ["R/1", "B/2"],
        ["R/2", "A"],
        ["R/2", "B/2"],
        ["R/2", "B/3"],
        ["R/3", "A"],
    ]
    assert last["offsets"] == {
        "R/2": 40.0, "R/3": 80.0, "B/1": 0.0, "B/2": 30.0, "B/3": 60.0, "A": 0.0,
    }  # fmt: skip
    # the second chapters share no sound with the first ones: they are placed end
    # to end (and say so), and the pairs across the cut, chance peaks 7 s off, are
    # never aligned
    together = found["cut together"]
    assert together["aligned"] == [
        ["A/1", "B/1"],
        ["A/2", "B/2"],
        ["R/1", "A/1"],
        ["R/1", "B/1"],
        ["R/2", "A/2"],
        ["R/2", "B/2"],
    ]
    assert together["offsets"] == {"R/2": 40.0, "A/1": 0.5, "A/2": 40.5, "B/1": 1.0, "B/2": 41.0}
    seams = together["end to end"]
    assert seams["A/1"] == seams["B/1"] == [], seams
    assert all(seams[node] for node in ("R/2", "A/2", "B/2")), seams  # through a cut
    # the seam puts A/2 at 35-65 s, 5 s with the reference: the pair left out is
    # tried because no other pair reaches A/2, and the sound overrules the seam
    twice = found["written twice"]
    assert twice["aligned"] == [["ref", "A/1"], ["ref", "A/2"]]
    assert twice["offsets"] == {"A/1": 5.0, "A/2": 5.0}
    assert twice["end to end"] == {"A/1": [], "A/2": []}
    assert twice["not continuing"] == {"A/2": {"A/1": 30000.0}}, twice  # 30 s, A/1's length
    # the sound's answer is only good to 3.5 ms: the cut (exact for a WAV) is tighter
    # and places the file; the sound's place, 6.88 ms away, stays in its bound. The
    # camera the tail was paired with keeps its own answer and bound
    tail = found["short tail"]
    assert tail["offsets"]["R/2"] == 40.0 and tail["end to end"]["R/2"] == ["R/2"], tail
    assert 6.88 <= tail["bounds"]["R/2"] < 7, tail
    assert tail["bounds"]["A"] == 0.1, tail
    assert tail["reasons"]["R/2"].startswith(
        "another chain of pairs puts it 6.88 ms away; placed end to end with R/1 -> R/2"
    ), tail["reasons"]
    # A/2's own pair measured no drift; across the cut its camera's is known, and its
    # offset, measured 6.5 s in, is carried to its middle along it (1.35 ms without)
    borrowed = found["borrowed drift"]
    assert abs(borrowed["drifts"]["A/2"] - 100.0) < 1e-6, borrowed
    assert abs(borrowed["offsets"]["A/2"] - 40 * (1 + 1e-4)) < 1e-9, borrowed
    assert abs(borrowed["bounds"]["A/2"] - (0.1 + 13.5 * 1e-3)) < 1e-9, borrowed
    assert found["kept"] == ["A/2-A/3", "B/1-B/2"]  # the sound overrules A/1-A/2
    assert found["broken"] == {"A/1-A/2": 30000.0}  # A/2 is heard where A/1 starts
    assert found["over silence"] == {"C/1-C/3": [15.0, [["C/1", "C/2"], ["C/2", "C/3"]]]}
    assert found["allowance"] == {
        "pcm_s24le 48000": 0.0, "flac 48000": 0.0, "aac 48000": 45.33, "mp3float 44100": 51.18,
    }  # fmt: skip


def test_a_recording_that_lost_samples_in_silence_is_doubtful_where_it_jumps(installed, tmp_path):
    """A WAV has no timestamps: a computer's recording that lost 0.1 s of samples
    40 s in is 100 ms off from there on. One offset cannot hold on both sides; it
    was reported for the larger part, status ok, bound 0.1 ms. Each stretch is
    searched again on its own: the one after the loss is named with its jump, and
    the stream is doubtful. The same recording without the loss passes."""
    import numpy as np

    scene = _scene(75, seed=12)
    camera = _cut(scene, 5, 60)
    lost = np.concatenate([camera[: 40 * CASE_RATE], camera[int(40.1 * CASE_RATE) :]])
    sessions = tmp_path / "study" / "sessions"
    for name, samples in (("ses-lost", lost), ("ses-whole", camera)):
        _write(sessions / name / "raw/audio/str-cam1/cam1.wav", _cut(scene, 0, 70))
        _write(sessions / name / "raw/audio/str-cam2/cam2.wav", samples)
    out = tmp_path / "out"
    result = _run(installed, tmp_path / "study", out, "--sessions", "ses-*", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    whole = _map(out, "ses-whole", "str-cam2")
    assert whole["status"] == "ok" and whole["jumps"] == [], whole
    found = _map(out, "ses-lost", "str-cam2")
    assert abs(found["offset_s"] - 5.0) * 1000 < 0.5, found  # right for the first 40 s
    assert found["status"] == "doubtful", found
    ((jump),) = found["jumps"]
    # the overlap (59.9 s) in two stretches: the second is 100 ms off from 40 s on
    assert jump == {"from_s": 29.95, "to_s": 59.9, "by_ms": 100.0}, found["jumps"]
    (warning,) = _record(out, "ses-lost")["warnings"]
    assert warning.startswith(
        "str-cam2: from 30 to 60 s of its recording the sound matches the reference "
        "+100 ms from this offset: samples were lost or added near one end of that stretch"
    ), warning


@pytest.mark.heavy
def test_a_quiet_session_with_cues_shows_a_real_jump_and_no_chance_one(installed, tmp_path):
    """The memory benchmark's session (a recorder's FLAC and a camera's AAC
    hearing a short cue a minute under -55 dBFS noise) was reported with jumps
    that were not there: 20-s stretches of noise alone, searched against a
    reference window with a loud cue in it, had chance peaks of 8-12 robust
    standard deviations (the cue makes the correlation's spread uneven across
    lags). Requiring a clear match to beat the best peak elsewhere left one,
    780-800 s of the camera (12.2 sd, 4.95 s away). And a camera that really
    lost 100 ms was not reported: a cue's own match, a thousand robust sd,
    has side lobes over the bar 100 ms away wherever the map held, so the
    loss looked like the sound's own pattern. Each lag is now scored against
    what unrelated sound gives there. Here 14 minutes and 13:40, written by
    the benchmark (the same samples up to 800 s), and the same camera as a
    WAV that lost 0.1 s at 610 s."""
    import importlib.util
    import wave

    import numpy as np

    path = Path(__file__).parents[1] / "benchmarks" / "sync_memory.py"
    spec = importlib.util.spec_from_file_location("sync_memory", path)
    assert spec is not None and spec.loader is not None
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    sessions = tmp_path / "study" / "sessions"
    quiet, lost = sessions / "ses-quiet", sessions / "ses-lost"
    for session in (quiet, lost):
        (session / "raw/audio/str-a").mkdir(parents=True)
    (quiet / "raw/video/str-b").mkdir(parents=True)
    (lost / "raw/audio/str-b").mkdir(parents=True)
    recorder = quiet / "raw/audio/str-a/recorder.flac"
    memory.write(recorder, "flac", 840.0, 0.0, 2)
    (lost / "raw/audio/str-a/recorder.flac").write_bytes(recorder.read_bytes())
    memory.write(quiet / "raw/video/str-b/camera.mp4", "aac", 820.0, memory.CAMERA_START_S, 1)
    # the camera's samples as the benchmark makes them, less 0.1 s at 610 s
    rng, rate = np.random.default_rng(8), memory.RATE
    cut = range(610 * rate, 610 * rate + rate // 10)
    with wave.open(str(lost / "raw/audio/str-b/camera.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        for start in range(0, 820, memory.BLOCK_S):
            data = memory.block(memory.CAMERA_START_S + start, memory.BLOCK_S, 1, rng)[:, 0]
            first = start * rate
            keep = (np.arange(first, first + len(data)) < cut.start) | (
                np.arange(first, first + len(data)) >= cut.stop
            )
            handle.writeframes(np.round(data[keep] * 32767).astype("<i2").tobytes())
    out = tmp_path / "out"
    result = _run(installed, tmp_path / "study", out, "--sessions", "ses-*")
    assert result.returncode == 0, result.stderr
    found = _map(out, "ses-quiet", "str-b")
    assert abs(found["offset_s"] - memory.CAMERA_START_S) * 1000 < 0.5, found
    assert found["jumps"] == [] and found["status"] == "ok", found
    found = _map(out, "ses-lost", "str-b")
    assert abs(found["offset_s"] - memory.CAMERA_START_S) * 1000 < 0.5, found  # before 610 s
    assert found["status"] == "doubtful" and found["jumps"], found
    assert {jump["by_ms"] for jump in found["jumps"]} == {100.0}, found["jumps"]
    # the first stretch after the loss with a cue in it, and none before the loss
    assert 590 < found["jumps"][0]["from_s"] < 660, found["jumps"]


_TIMELINE_CASE = r"""
import fractions, json
import av
import numpy as np
from mdivicom_sync_audio.io import MediaError, _Timeline

RATE = 1000
def frame(start, count, layout="mono", fmt="fltp"):
    # frame k's samples are their own time in ms: where each lands is visible
    values = np.arange(start, start + count, dtype=np.float32)
    channels = 2 if layout == "stereo" else 1
    if fmt == "fltp":
        data = np.repeat(values[None], channels, 0)
    else:  # packed: the channels interleaved in one row
        data = np.repeat(values, channels)[None]
    made = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
    made.rate, made.pts, made.time_base = RATE, start, fractions.Fraction(1, RATE)
    return made

def lay(starts, count=100, **kind):
    timeline, out = _Timeline("cam.mkv", 0.0), []
    for start in starts:
        for placed in timeline.place(frame(start, count, **kind)):
            out.append(placed.to_ndarray()[0][:: 1 if kind.get("fmt", "fltp") == "fltp" else 2])
    return np.concatenate(out).tolist(), timeline.gaps

found = {}
found["jitter"] = lay([0, 100, 203, 300])  # 3 ms of rounding: not a gap
found["gap"] = lay([0, 100, 350, 450], fmt="flt", layout="stereo")
found["overlap"] = lay([0, 100, 200, 300, 150, 250, 350, 450])
found["long_overlap"] = lay([0, 100, 200, 300, 400, 500, 180, 280, 380, 480, 580, 680])
for label, starts in (("reset", [0, 100, 200, -2500]), ("join", [0, 100, 700_100])):
    try:
        lay(starts)
    except MediaError as error:
        found[label] = str(error)
print(json.dumps(found))
"""


def test_decoded_frames_go_where_their_timestamps_put_them(installed):
    """Rounding of a few ms is not a gap; a jump ahead is filled with silence, a jump
    back drops the overlap (also when it spans whole frames), and a jump beyond
    what a dropout or an overlap can be is an error naming the file and the time."""
    found = _run_case(_TIMELINE_CASE, installed)
    samples, gaps = found["jitter"]
    assert samples == list(range(100)) + list(range(100, 200)) + list(range(203, 303)) + list(
        range(300, 400)
    )
    assert gaps == []
    samples, gaps = found["gap"]
    assert samples == list(range(200)) + [0] * 150 + list(range(350, 550)), samples
    assert gaps == [[0.2, 0.15]]
    samples, gaps = found["overlap"]  # 150-399 came again: 400 goes on after 399
    assert samples == list(range(550)), samples
    assert gaps == [[0.4, -0.25]]
    samples, gaps = found["long_overlap"]  # back 420 ms: four frames dropped whole
    assert samples == list(range(780)), samples
    assert gaps == [[0.6, -0.42]]
    assert found["reset"].startswith("cam.mkv: its audio timestamps jump -2.800 s at 0.300 s"), (
        found
    )
    assert "cannot be placed in time: split it there" in found["reset"]
    assert found["join"].startswith("cam.mkv: its audio timestamps jump +699.900 s at 0.200 s")


def _room(rng, distance_m: float, rt60: float = 0.5):
    """An impulse response at CASE_RATE: direct sound, early reflections, a diffuse tail."""
    import numpy as np

    response = np.zeros(int(rt60 * CASE_RATE))
    direct = round(distance_m / 343.0 * CASE_RATE)
    response[direct] = 1.0 / distance_m
    for _ in range(8):
        delay = rng.uniform(0.001, 0.025)
        weaker = distance_m / (distance_m + 343.0 * delay) * rng.uniform(0.6, 0.9)
        response[direct + int(delay * CASE_RATE)] += weaker / distance_m
    t = np.arange(len(response) - direct) / CASE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * (1 - np.exp(-t / 0.01))
    response[direct:] += tail * np.sqrt(1.0 / float(np.sum(tail**2)))  # DRR (1 m / d)^2
    return response


def _convolve(sound, response):
    """Linear convolution cut to the sound's length, by FFT (numpy only: no scipy here)."""
    import numpy as np

    size = 1 << (len(sound) + len(response) - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(sound, size) * np.fft.rfft(response, size), size)[: len(sound)]


def test_two_talkers_give_the_alignment_of_the_one_heard_most(installed, tmp_path):
    """Two talkers at different places, taking turns: each has its own direct-path
    alignment (here 20 ms apart) and its own echoes. The offset is the alignment
    of the talker who speaks most, not an echo or a blend of the two, and the
    error bound covers it."""
    import numpy as np

    rng = np.random.default_rng(11)
    seconds, start = 36.0, 3.0
    talkers = [_scene(seconds + 10, seed=21), _scene(seconds + 10, seed=22)]
    turns = (np.arange(len(talkers[0])) / CASE_RATE) % 12.0 >= 8.0  # A 8 s, then B 4 s
    talkers[0] *= ~turns
    talkers[1] *= turns
    # distances (m): talker A is near camera 1, talker B near camera 2
    distances = {"str-cam1": (1.2, 4.6), "str-cam2": (5.0, 1.4)}
    root = tmp_path / "talkers"
    session = root / "sessions" / "ses-01"
    session.mkdir(parents=True)
    (session / "ses-01_session.yaml").write_text("id: ses-01\n")
    for index, (sid, far) in enumerate(distances.items()):
        heard = sum(
            _convolve(talker, _room(rng, d)) for talker, d in zip(talkers, far, strict=True)
        )
        begin = 1.0 + index * start  # camera 2 started 3 s after camera 1
        cut = heard[int(begin * CASE_RATE) : int((begin + seconds) * CASE_RATE)]
        cut = cut + rng.standard_normal(len(cut)) * np.std(cut) * 0.1
        _write(session / "raw" / "audio" / sid / f"{sid[4:]}.wav", cut)
    (root / "dataset_manifest.yaml").write_text("name: talkers\nversion: 0.1.0\n")
    out = tmp_path / "out"
    result = _run(installed, root, out, "--sessions", "ses-*")
    assert result.returncode == 0, result.stderr
    found = _map(out, "ses-01", "str-cam2")
    # t_cam1 = t_cam2 + offset: the start difference minus each talker's path difference
    talker_a = start - (5.0 - 1.2) / 343.0
    talker_b = start - (1.4 - 4.6) / 343.0
    error_a = abs(found["offset_s"] - talker_a) * 1000
    assert error_a < 0.5, (found, abs(found["offset_s"] - talker_b) * 1000)
    assert error_a <= found["error_bound_ms"]
    # the other talker's alignment is reported beside it, not blended into it
    (other,) = found["other_source_offsets_s"]
    assert abs(other - talker_b) * 1000 < 0.5, found


def test_the_split_real_fft_equals_numpys(installed):
    """The whole-overlap search's memory-saving FFT (two half-size transforms) gives
    numpy's rfft within float32 rounding, padded or not, odd lengths included."""
    check = """
import numpy as np
from mdivicom_sync_audio import coarse
rng = np.random.default_rng(3)
size = 2 * coarse.SPLIT_MIN
for length in (size, size - 1, size * 3 // 4 + 1):
    x = rng.standard_normal(length).astype(np.float32)
    expected, got = np.fft.rfft(x, size), coarse.real_spectrum(x, size)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected)), length
print("equal")
"""
    done = subprocess.run(
        [sys.executable, "-c", check], env=installed, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "equal"


def _run_case(code: str, env: dict[str, str], *args: str) -> dict:
    """Run `code` (with `args` in sys.argv) with the installed example importable;
    the JSON it printed."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


_NETWORK_CASE = r"""
import json, sys
import numpy as np
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

lags = np.arange(-50, 50.001, 0.125)

def pair(offset_s, bound_ms, peaks):
    # a correlation with a peak of each height at each lag (ms from the chosen peak)
    curve = sum(h * np.exp(-0.5 * ((lags - at) / 0.1) ** 2) for at, h in peaks.items())
    return Result(offset_s, None, bound_ms, None, 60.0, 20.0,
                  plot={"lags_ms": lags, "curve": curve})

# truth: t_cam1 = t_cam2 + 2 s = t_cam3 + 5 s. Camera 2 has a strong reflection 9.9 ms
# after its direct sound: the cam2-cam3 pair (cam2 as its reference) picked it,
# +9.9 ms off and sure of it; the cam1-cam2 pair picked the direct sound but
# saw the reflection (at -9.9 ms) nearly as high, so its bound is wide.
echo = 0.0099
wrong_chain = {
    ("str-cam1", "str-cam2"): pair(2.0, 10.2, {0.0: 1.0, -9.9: 0.84}),
    ("str-cam1", "str-cam3"): pair(5.0, 0.15, {0.0: 1.0}),
    ("str-cam2", "str-cam3"): pair(3.0 + echo, 0.4, {0.0: 1.0, -1.9: 0.9, -9.9: 0.25}),
}
# the mirror case: the direct pair picked camera 3's own reflection (the chain
# is right); the direct pair's alignment puts camera 3's sound later, not earlier
wrong_direct = {
    ("str-cam1", "str-cam2"): pair(2.0, 0.15, {0.0: 1.0}),
    ("str-cam1", "str-cam3"): pair(5.0 - 0.0084, 20.0, {0.0: 1.0, 8.4: 0.7}),
    ("str-cam2", "str-cam3"): pair(3.0, 0.2, {0.0: 1.0, -8.4: 0.5}),
}
streams = ["str-cam1", "str-cam2", "str-cam3"]
out = {}
for name, pairs in (("wrong_chain", wrong_chain), ("wrong_direct", wrong_direct)):
    solved, routes = combine(pairs, {}, "str-cam1", streams, {s: 30.0 for s in streams})
    out[name] = {s: [solved[s].offset_s, solved[s].error_bound_ms, routes[s]] for s in streams[1:]}
print(json.dumps(out))
"""


def test_a_chain_through_a_cameras_reflection_loses_to_the_earlier_direct_pair(installed):
    """A camera's reflection closes the loops as well as its direct sound does, but
    arrives later: the network keeps the earlier alignment when every pair with the
    camera has a peak there, and otherwise the chain the error bounds choose."""
    found = _run_case(_NETWORK_CASE, installed)
    offset, bound, route = found["wrong_chain"]["str-cam2"]
    assert route == ["str-cam1", "str-cam2"]
    assert abs(offset - 2.0) * 1000 < 0.01
    assert abs(offset - 2.0) * 1000 <= bound
    offset, bound, route = found["wrong_direct"]["str-cam3"]
    assert route == ["str-cam1", "str-cam2", "str-cam3"]
    assert abs(offset - 5.0) * 1000 < 0.01
    # camera 3 is reached directly in the first case and stays so
    assert found["wrong_chain"]["str-cam3"][2] == ["str-cam1", "str-cam3"]


_PARTIAL_DRIFT_CASE = r"""
import json
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

def pair(drift_ppm, offset_s, bound_ms, drift_error_ppm):
    return Result(offset_s, drift_ppm, bound_ms, drift_error_ppm, 120.0, 20.0)

# no pair with the reference pinned a drift (too few onsets at one end, say) but
# the cam2-cam3 pair did, unsure of it; the bounds choose the chain through cam3
streams = ["str-cam1", "str-cam2", "str-cam3"]
pairs = {
    ("str-cam1", "str-cam2"): pair(None, 2.0, 7.6, None),
    ("str-cam1", "str-cam3"): pair(None, 5.0, 0.4, None),
    ("str-cam2", "str-cam3"): pair(-160.0, 3.0, 1.5, 15.0),
}
out, routes = combine(pairs, {}, "str-cam1", streams, {s: 60.0 for s in streams})
cam2 = out["str-cam2"]
print(json.dumps([routes["str-cam2"], cam2.drift_ppm, cam2.drift_error_ppm]))
"""


_AGREEING_CHAIN_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

lags = np.arange(-50, 50.001, 0.125)

def pair(offset_s, bound_ms, peaks, alternatives_ms=()):
    curve = sum(h * np.exp(-0.5 * ((lags - at) / 0.1) ** 2) for at, h in peaks.items())
    return Result(offset_s, None, bound_ms, None, 60.0, 20.0,
                  plot={"lags_ms": lags, "curve": curve}, alternatives_ms=list(alternatives_ms))

# truth: t_cam1 = t_cam2 + 2 s = t_cam3 + 5 s. Camera 2's reflection, 3 ms after its
# direct sound, outscores it in every pair with camera 2: the direct pair picked it
# but kept the direct sound (3 ms earlier: +3 ms in t_cam1 - t_cam2) as a doubt; the
# cam2-cam3 pair picked it too, sure of itself, so the chain through camera 3
# agrees with the direct pair and its bound is the tighter one.
echo = 0.003
streams = ["str-cam1", "str-cam2", "str-cam3"]
cam3 = pair(5.0, 0.15, {0.0: 1.0})
cases = {
    # the cam2-cam3 pair has a peak where the earlier alignment puts it
    "not_ruled_out": (pair(2.0 - echo, 3.4, {0.0: 1.0, 3.0: 0.8}, [3.0]),
                      pair(3.0 + echo, 0.2, {0.0: 1.0, -3.0: 0.5})),
    # it has none there: the chain rules the direct pair's doubt out
    "ruled_out": (pair(2.0 - echo, 3.4, {0.0: 1.0, 3.0: 0.8}, [3.0]),
                  pair(3.0 + echo, 0.2, {0.0: 1.0})),
    # the doubt is later than the answer: no reflection of camera 2 explains it
    "later": (pair(2.0 - echo, 3.4, {0.0: 1.0, -3.0: 0.8}, [-3.0]),
              pair(3.0 + echo, 0.2, {0.0: 1.0, 3.0: 0.5})),
    # the direct pair is sure of itself and is the route; the cam2-cam3 pair kept the
    # direct sound (-3 ms in t_cam2 - t_cam3) as a doubt, and the direct pair's
    # correlation has a peak there too
    "cross_doubt": (pair(2.0 - echo, 0.15, {0.0: 1.0, 3.0: 0.6}),
                    pair(3.0 + echo, 3.4, {0.0: 1.0, -3.0: 0.8}, [-3.0])),
    # the same, but the direct pair has no peak there: it rules the doubt out
    "cross_doubt_ruled_out": (pair(2.0 - echo, 0.15, {0.0: 1.0}),
                              pair(3.0 + echo, 3.4, {0.0: 1.0, -3.0: 0.8}, [-3.0])),
}
out = {}
for name, (direct, cross) in cases.items():
    pairs = {("str-cam1", "str-cam2"): direct, ("str-cam1", "str-cam3"): cam3,
             ("str-cam2", "str-cam3"): cross}
    solved, routes = combine(pairs, {}, "str-cam1", streams, {s: 30.0 for s in streams})
    cam2 = solved["str-cam2"]
    out[name] = [cam2.offset_s, cam2.error_bound_ms, routes["str-cam2"], cam2.bound_reason]
print(json.dumps(out))
"""


def test_routes_that_agree_keep_a_pairs_doubt_that_the_sound_came_earlier(installed):
    """Routes that agree may all sit on the same reflection of the stream (every pair
    with the stream has it): any pair's doubt that the stream's sound came earlier
    stays in the bound unless a pair with the stream has no peak there, whichever
    route was taken. Offsets do not move; only what is claimed about them."""
    found = _run_case(_AGREEING_CHAIN_CASE, installed)
    offset, bound, route, reason = found["not_ruled_out"]
    assert route == ["str-cam1", "str-cam3", "str-cam2"]
    error_ms = abs(offset - 2.0) * 1000
    assert 2.9 < error_ms <= bound, (error_ms, bound)
    assert "3.00 ms earlier" in reason
    for name in ("ruled_out", "later"):
        offset, bound, route, reason = found[name]
        assert route == ["str-cam1", "str-cam3", "str-cam2"], name
        assert bound < 0.5, (name, bound, reason)
        assert "earlier" not in reason, name
    offset, bound, route, reason = found["cross_doubt"]
    assert route == ["str-cam1", "str-cam2"]
    error_ms = abs(offset - 2.0) * 1000
    assert 2.9 < error_ms <= bound, (error_ms, bound)
    assert reason.startswith("the pair with str-cam3 has a peak 3.00 ms earlier"), reason
    offset, bound, route, reason = found["cross_doubt_ruled_out"]
    assert route == ["str-cam1", "str-cam2"]
    assert bound < 0.5, (bound, reason)


def test_a_chain_without_a_drift_has_no_drift_error(installed):
    """A drift error without a drift made the plugin fail while writing its warning
    (TypeError formatting None): a chain has a drift error only when it has a drift."""
    route, drift, error = _run_case(_PARTIAL_DRIFT_CASE, installed)
    assert route == ["str-cam1", "str-cam3", "str-cam2"]
    assert (drift, error) == (None, None)


_DRIFT_ROUTES_CASE = r"""
import json
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

def pair(drift_ppm, offset_s, bound_ms, drift_error_ppm):
    return Result(offset_s, drift_ppm, bound_ms, drift_error_ppm, 300.0, 20.0)

# cameras 2 and 3 both run 999 ppm slow; in a 300-s room (long seed 10 of the
# evaluation) the reference-camera 3 pair pinned -109.8 ppm and was sure of it
streams = ["str-cam1", "str-cam2", "str-cam3"]
out = {}
for name, third in (("one pair far off", -109.8), ("all agree", -999.2)):
    pairs = {
        ("str-cam1", "str-cam2"): pair(-999.0, 2.0, 4.5, 1.2),
        ("str-cam1", "str-cam3"): pair(third, 5.0, 28.3, 2.5),
        ("str-cam2", "str-cam3"): pair(-0.06, 3.0, 19.1, 0.43),
    }
    solved, routes = combine(pairs, {}, "str-cam1", streams, {s: 150.0 for s in streams})
    out[name] = {
        sid: [r.drift_ppm, r.drift_error_ppm, r.drift_via, r.drift_reason]
        for sid, r in solved.items()
    }
print(json.dumps(out))
"""


def test_a_drift_other_routes_disagree_with_is_not_sure(installed):
    """Each stream's drift takes the chain of pairs that reports the least error, but
    a pair can pin a drift 889 ppm off with an error of 2.5 ppm, and when another
    camera's pair is the one that moves the choice, the wrong drift was reported
    "good to +-3 ppm". Like the offset's bound, the drift's error covers every
    other route that measured a drift and disagrees; where they agree it stays."""
    found = _run_case(_DRIFT_ROUTES_CASE, installed)
    drift, error, via, reason = found["one pair far off"]["str-cam3"]
    assert abs(drift + 999.06) < 0.01 and via == ["str-cam2"], found
    assert error >= 889.2 + 1.6, found  # covers -109.8 ppm, on top of its own error
    assert reason == "another chain of pairs measures it 889.3 ppm away", found
    drift, error, via, reason = found["one pair far off"]["str-cam2"]
    assert abs(drift + 999.0) < 0.01 and error >= 889.2, found  # through cam3: -109.7 ppm
    for sid in ("str-cam2", "str-cam3"):
        drift, error, via, reason = found["all agree"][sid]
        assert error < 2 and reason == "", found


_FAR_RETAKE_CASE = r"""
import json
from types import SimpleNamespace
import numpy as np
from mdivicom_sync_audio import fine

# The scores a 300-s room gave (long seed 10 of the evaluation, the reference and a
# camera at -999 ppm): the smeared blocks peak at 0.263 over the wide grid; taken
# along the drift the recording's pieces offered (-1046 ppm) they peak at -997.9 ppm
# with 0.672, standing out of a +-262 ppm grid; taken once more along that, 0.677 at
# -1000.2 ppm on a +-48.5 ppm grid, all of it near the peak.
def fit(ppm, determined, score, at_limit=False):
    return fine.DriftFit(ppm * 1e-6, determined, score, [], at_limit)

answers = iter([fit(499.0, True, 0.263), fit(-997.9, True, 0.672), fit(-1000.2, False, 0.677)])
fine._best_drift = lambda *args: next(answers)
fine._blocks_along = lambda *args: "blocks"
ref = SimpleNamespace(rate=8000)
usual = fit(-33.3, True, 0.263)
look = fine._far_drift(ref, ref, None, usual, 0.0, np.arange(8), 150.0, (-1046.46e-6,))
print(json.dumps(None if look.fit is None else [look.fit.drift * 1e6, look.fit.determined]))
"""


def test_a_far_drift_taken_again_twice_still_counts(installed):
    """A far drift is confirmed on the span's blocks taken along it; when that retake
    moves the drift by more than a sample across a block, the blocks are taken once
    more along what it chose, on a grid only as wide as the move. Such a grid is all
    near the peak, so its peak never stands out of it: the drift was dropped though it
    scored 2.6 times the bar, and the pair pinned -109.8 +- 2.5 ppm for a camera at
    -999 ppm. Whether the peak stands out is judged on the wider first retake."""
    found = _run_case(_FAR_RETAKE_CASE, installed)
    assert found is not None, "the confirmed far drift was dropped"
    assert abs(found[0] + 1000.2) < 1e-6 and found[1] is True, found


_WHITEN_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import fine

rate, frame = 8000, 1024
size = 2 * frame
freqs = np.arange(frame + 1) * rate / size
omega = 2 * np.pi * np.arange(frame + 1) / size  # per sample
direct, echo = 0.0, 3.0 * rate / 1000  # lags (samples): the truth, a reflection 3 ms later
# below 1 kHz two reflections arriving together outweigh the direct sound
# (1.6x); above it they are half as strong as the direct sound
low = freqs < 1000
mix = np.where(low, 1.6, 0.5)
phase = np.exp(-1j * omega * direct) + mix * np.exp(-1j * omega * echo)
phase /= np.abs(phase)
# summed over frames, the low bands carry four times the weight (speech, onsets)
spectrum = phase * np.where(low, 4.0, 1.0)
blocks = fine.Blocks(
    times_s=np.array([2.0]),
    shifts=np.array([0.0]),
    spectra=spectrum[None, :],
    log_ratio=np.zeros((1, frame + 1), dtype=np.float32),
    weights=np.array([1.0]),
    band_weights=np.ones((1, frame + 1)),
    frame=frame,
)
every = np.array([True])
out = {
    name: fine._choose(blocks.spectra, blocks, every, rate, whiten=whiten).lag / rate * 1000
    for name, whiten in (("weighted", False), ("whitened", True))
}
print(json.dumps(out))
"""


def test_the_summed_evidence_is_whitened_so_high_bands_time_the_direct_path(installed):
    """Speech puts most of the summed evidence below 1 kHz, where reflections merge
    with the direct sound into one broad lobe; with every band given one vote the
    high bands' timing picks the direct-direct peak instead of the reflection's."""
    found = _run_case(_WHITEN_CASE, installed)
    assert abs(found["weighted"] - 3.0) < 0.1  # the band weights pull to the reflection
    assert abs(found["whitened"]) < 0.05


_EARLY_PHASE_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import fine

rate, frame = 8000, 1024
size = 2 * frame
omega = 2 * np.pi * np.arange(frame + 1) / size  # per sample
direct, delay, strength = 40.0, 3.0 * rate / 1000, 0.7
# the reference hears a floor reflection 3 ms after the direct sound; the other does not
early = 1 + strength * np.exp(-1j * omega * delay)
log_gain = np.log(np.abs(early))
found = fine._early_phase(log_gain, frame, 200)  # reflections up to 25 ms
phase_error = np.abs(np.angle(np.exp(1j * (found - np.angle(early)))))
cross = np.exp(-1j * omega * direct) * early
blocks = fine.Blocks(
    times_s=np.array([2.0]),
    shifts=np.array([0.0]),
    spectra=(cross / np.abs(cross))[None, :],
    log_ratio=(2 * log_gain)[None, :].astype(np.float32),
    weights=np.array([1.0]),
    band_weights=np.ones((1, frame + 1)),
    frame=frame,
)
lags, plain = fine._curve(blocks.spectra[0], frame, rate)
corrected = blocks.spectra[0] * np.exp(-1j * found)
_, clean = fine._curve(corrected, frame, rate)
at_echo = np.abs(lags - (direct + delay)) < 0.5
choice = fine._choose(blocks.spectra, blocks, np.array([True]), rate)
print(json.dumps({
    "phase_error": float(phase_error.max()),
    "plain_echo": float(plain[at_echo].max() / plain.max()),
    "clean_echo": float(clean[at_echo].max() / clean.max()),
    "clean_peak": float(lags[np.argmax(clean)]),
    "lag": choice.lag,
    "elsewhere": choice.views_elsewhere,
}))
"""


def test_the_phase_of_a_recordings_early_reflection_comes_from_its_level(installed):
    """A minimum-phase early response's phase follows from its level, and the two
    recordings' level difference is measured: taking that phase out of the
    cross-spectrum removes the reflection's peak and leaves the direct-direct one,
    which all three views then agree on."""
    found = _run_case(_EARLY_PHASE_CASE, installed)
    assert found["phase_error"] < 0.02, found  # radians, over every band
    assert found["plain_echo"] > 0.3, found  # the reflection is a peak of its own
    assert found["clean_echo"] < 0.05, found  # and corrected away
    assert found["clean_peak"] == 40.0, found
    assert abs(found["lag"] - 40.0) < 0.05, found
    # the views that were not chosen agree: no doubt beyond a hundredth of a sample
    assert len(found["elsewhere"]) == 2, found
    assert all(abs(lag - 40.0) < 0.05 for lag in found["elsewhere"]), found


_NEAR_EQUAL_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import fine

rate = 8000
lags = np.arange(-400, 401) / 8  # samples, oversampled 8x like fine._curve
values = np.zeros(len(lags))
def peak(at_ms, height):
    values[:] = np.maximum(values, height * np.exp(-(((lags - at_ms * rate / 1000) / 0.6) ** 2)))
# the chosen peak at 0; beside it (ms: height) a reflection nearly as high, a lower
# one, one beyond an early reflection's reach, and the chosen peak's own shoulder
for at_ms, height in ((0.0, 1.0), (3.5, 0.8), (-5.0, 0.6), (30.0, 0.95), (0.1, 0.9)):
    peak(at_ms, height)
choice = fine.Choice(lag=0.0, height=1.0, lags=lags, values=values, rivals=[])
print(json.dumps([[at / rate * 1000, ratio] for at, ratio in fine._near_equal(choice, rate)]))
"""


def test_a_peak_nearly_as_high_as_the_answer_widens_its_bound(installed):
    """On the development rooms every stream that was more than 2 ms off without a
    warning had another peak at least 70 % as high within 25 ms in its
    correlation (in those examined, a camera's own coincident reflections
    outweigh its direct sound, and every pair, half and view agree on them).
    Such a peak is a doubt whatever its merit; lower peaks, peaks beyond an
    early reflection's reach and the chosen peak's own shoulder are not."""
    found = _run_case(_NEAR_EQUAL_CASE, installed)
    assert len(found) == 1 and abs(found[0][0] - 3.5) < 0.02, found
    assert abs(found[0][1] - 0.8) < 0.01, found  # its height, for the warning


_DRY_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import fine

rate, frame = 8000, 1024
size = 2 * frame
omega = 2 * np.pi * np.arange(frame + 1) / size  # per sample

def room(seed):
    # a camera's response: the direct sound (1), then ten reflections within 20 ms
    # of up to 1.6 times its strength, then a weak diffuse tail
    rng = np.random.default_rng(seed)
    delays = np.sort(rng.uniform(1.0, 20.0, 10)) * rate / 1000
    response = 1.0 + sum(
        a * np.exp(-1j * omega * d) for d, a in zip(delays, rng.uniform(0.5, 1.6, 10))
    )
    decay = np.exp(-11.5 * np.arange(int(0.3 * rate)) / rate)  # a 0.6 s RT60
    tail = rng.standard_normal(len(decay)) * decay
    return response + np.fft.rfft(np.r_[0.0, 0.2 * tail], size)

def choose(cross, log_ratio):
    blocks = fine.Blocks(
        times_s=np.array([2.0]),
        shifts=np.array([0.0]),
        spectra=(cross / np.abs(cross))[None, :],
        log_ratio=log_ratio[None, :].astype(np.float32),
        weights=np.array([1.0]),
        band_weights=np.ones((1, frame + 1)),
        frame=frame,
    )
    choice = fine._choose(blocks.spectra, blocks, np.array([True]), rate)
    elsewhere = [float(lag / rate * 1000) for lag in choice.views_elsewhere]
    return {"lag": float(choice.lag / rate * 1000), "view": choice.view, "elsewhere": elsewhere}

camera, other_camera = room(6), room(2)
out = {
    # lag = reference index - other index: the camera's reflections arrive after
    # its direct sound, so they sit at earlier lags when the camera is the other
    "dry reference": choose(np.conj(camera), -2 * np.log(np.abs(camera))),
    "dry other": choose(camera, 2 * np.log(np.abs(camera))),
    "both reverberant": choose(
        other_camera * np.conj(camera),
        2 * np.log(np.abs(other_camera)) - 2 * np.log(np.abs(camera)),
    ),
}
print(json.dumps(out))
"""


def test_with_one_recording_dry_the_outermost_strong_peak_is_the_direct_path(installed):
    """A close microphone hears little of the room, so its correlation with a camera
    is the camera's own response: the direct sound first, then reflections that
    here add up to more than it. The direct peak is the outermost strong one with
    nothing beyond it, on whichever side the dry recording puts it; the views'
    choices stay as alternatives (the bound covers them). Two reverberant
    recordings have reflections on both sides, and the test does not apply."""
    found = _run_case(_DRY_CASE, installed)
    for orientation in ("dry reference", "dry other"):
        case = found[orientation]
        assert abs(case["lag"]) < 0.05, found
        assert case["view"] == "one side nearly dry", found
        assert max(abs(lag) for lag in case["elsewhere"]) > 2.0, found  # a reflection
    assert found["both reverberant"]["view"] != "one side nearly dry", found


_BURSTS = r"""
import json
from pathlib import Path
import numpy as np
from mdivicom_sync_audio import fine
from mdivicom_sync_audio.io import Audio

rate = 8000

def bursts(rng, seconds, count):
    # decaying noise bursts (claps, plosives) over a low noise floor
    out = rng.standard_normal(seconds * rate) * 0.01
    for start in rng.integers(0, (seconds - 1) * rate, count):
        burst = rng.standard_normal(rate // 5) * np.exp(-np.arange(rate // 5) / (rate / 40))
        out[start : start + rate // 5] += burst
    return out

def audio(samples):
    return Audio(Path("x.wav"), rate, samples.astype(np.float16), rate, 1, "pcm", "wav", 0.0)
"""

_DRIFT_EDGE_CASE = (
    _BURSTS
    + r"""
seconds, ppm = 40, 100.0
scene = bursts(np.random.default_rng(5), seconds, 60)
# the other camera's clock runs 100 ppm fast: its sample n is the scene at n / (1 + 1e-4)
other = np.interp(np.arange(seconds * rate) / (1 + ppm * 1e-6), np.arange(len(scene)), scene)
ref, oth = audio(scene), audio(other)
times = np.arange(0, (seconds - 5) * rate, int(fine.BLOCK_S * rate))
mid_s = seconds / 2
lag_at = -ppm * 1e-6 * ((times + fine.BLOCK_S * rate / 2) / rate - mid_s) * rate
blocks = fine.collect_blocks(fine.Analysed(ref), fine.Analysed(oth), lag_at, times)
found = {}
# both grids are wide, so the best stands out of their median either way
for name, centre, reach in (("around", -100e-6, 150e-6), ("beside", 100e-6, 180e-6)):
    fit = fine._best_drift(blocks, centre, reach, 0, mid_s)
    found[name] = [fit.drift * 1e6, fit.determined]
print(json.dumps(found))
"""
)


def test_a_drift_search_whose_best_is_its_edge_has_not_found_the_drift(installed):
    """A grid that stops short of the drift peaks at its edge, which is no located
    peak: the drift search must say so rather than pin the drift there."""
    found = _run_case(_DRIFT_EDGE_CASE, installed)
    around, beside = found["around"], found["beside"]
    assert around[1] is True and abs(around[0] + 100) < 8, found  # 35 s of blocks
    assert beside[1] is False and abs(beside[0] + 80) < 1, found


_DRIFT_RIVAL_CASE = (
    _BURSTS
    + r"""
seconds = 120
rng = np.random.default_rng(11)

def warped(sound, ppm):
    # heard on a clock `ppm` fast, aligned with the reference at the recording's middle
    n = np.arange(seconds * rate)
    mid = seconds * rate / 2
    return np.interp(mid + (n - mid) / (1 + ppm * 1e-6), np.arange(len(sound)), sound)

scene, decoy = bursts(rng, seconds, 200), bursts(rng, seconds, 300)
middle = np.abs(np.arange(seconds * rate) / rate - seconds / 2) < 15
# the camera's clock runs 60 ppm slow (drift +60 ppm); in the middle 30 s a louder,
# busier sound lines up along a drift of about -130 ppm
ref = scene + 1.4 * middle * decoy
other = warped(scene, -60.0) + 1.4 * middle * warped(decoy, 127.0)
spans = []
search = fine._best_drift
def recorded(blocks, centre, reach, base, mid_s):
    fit = search(blocks, centre, reach, base, mid_s)
    span = float(blocks.times_s[-1] - blocks.times_s[0])
    spans.append([span, fit.drift * 1e6, [r * 1e6 for r in fit.rivals]])
    return fit
fine._best_drift = recorded
found = fine.refine(audio(ref), audio(other), 0.0, True)
print(json.dumps({"drift_ppm": found.drift * 1e6, "pinned": found.drift_pinned, "spans": spans}))
"""
)


def test_a_drift_a_short_span_cannot_rule_out_is_decided_by_a_longer_one(installed):
    """The drift search starts on the middle 30 s and narrows around what it found
    there; a held-out two-talker room had its drift 185 ppm off because a weak
    middle span favoured a wrong drift and the narrowed search never looked back.
    A drift nearly as good as the best stays in play until a longer span decides."""
    found = _run_case(_DRIFT_RIVAL_CASE, installed)
    first_span, first_drift, first_rivals = found["spans"][0]
    # the case is what it claims: the first span alone prefers the decoy's line
    assert first_span < 40 and abs(first_drift + 130) < 5, found
    assert any(abs(r - 60) < 5 for r in first_rivals), found
    assert found["pinned"] and abs(found["drift_ppm"] - 60) < 1, found


def _sample(env, root: Path, *args: str) -> dict:
    """A generated dataset (mdivicom_sync_audio.sample) and its truth."""
    command = [sys.executable, "-m", "mdivicom_sync_audio.sample", str(root), *args]
    subprocess.run(command, env=env, check=True)
    return json.loads((root / "sample_truth.json").read_text())


@pytest.mark.heavy
def test_a_clock_a_thousandth_off_is_measured_and_one_beyond_the_search_is_not(installed, tmp_path):
    """Video conformed to 29.97 fps runs its audio 0.1 % slow (-999 ppm). The drift
    search went to +-250 ppm and the frames inside each 4-s block were summed at
    one lag, though it moves 4 ms across the block: such a camera came out 240 ppm
    off, and a clock at 400 ppm read +160.8 ppm "good to +-45". Now the frames are
    aligned along the drift and, while no drift is pinned, the search looks up to
    +-1200 ppm. A clock at 3000 ppm gets no drift, a doubtful status, and a bound
    that covers its offset."""
    truth = _sample(
        installed, tmp_path / "pulled", "--sessions", "2", "--seed", "7", "--seconds", "60",
        "--drift-ppm", "-999", "--scenes", "dry,room",
    )  # fmt: skip
    out = tmp_path / "out"
    result = _run(installed, tmp_path / "pulled", out, "--sessions", "ses-*", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    for session, info in truth.items():
        for stream, true_offset in info["offsets_s"].items():
            if stream == "str-cam1":
                continue
            found = _map(out, session, stream)
            assert abs(found["drift_ppm"] + 999) < 1, found
            assert abs(found["offset_s"] - true_offset) * 1000 < 0.5, found
            if info["scene"] == "dry":
                assert found["status"] == "ok", found
    truth = _sample(
        installed, tmp_path / "far", "--sessions", "1", "--seed", "7", "--seconds", "60",
        "--drift-ppm", "3000",
    )  # fmt: skip
    result = _run(installed, tmp_path / "far", tmp_path / "far-out", "--sessions", "ses-*")
    assert result.returncode == 0, result.stderr
    for stream, true_offset in truth["ses-01"]["offsets_s"].items():
        if stream != "str-cam1":
            found = _map(tmp_path / "far-out", "ses-01", stream)
            assert found["drift_ppm"] is None and found["status"] == "doubtful", found
            # 60 s at 3000 ppm: 90 ms across the recording, which the bound covers here
            assert abs(found["offset_s"] - true_offset) * 1000 <= found["error_bound_ms"], found


def _drifting_session(
    session: Path, seconds: int, ppm: float, seed: int, rate: int = CASE_RATE
) -> None:
    """A reference and a camera that started 5 s into it and whose clock runs `ppm`
    off (t_reference = t_camera * (1 + ppm * 1e-6) + 5), both hearing noise bursts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    count = (seconds + 20) * rate
    scene = rng.standard_normal(count) * 0.002
    for _ in range(int(seconds * 1.5)):
        length = int(rng.uniform(0.05, 0.6) * rate)
        start = int(rng.integers(0, count - length))
        scene[start : start + length] += rng.standard_normal(length) * np.exp(
            -np.arange(length) / (length / 4)
        )
    times = 5 + np.arange(seconds * rate) / rate * (1 + ppm * 1e-6)
    _write(session / "raw/audio/str-cam1/cam1.wav", scene[: (seconds + 10) * rate], rate)
    _write(
        session / "raw/audio/str-cam2/cam2.wav",
        np.interp(times * rate, np.arange(count), scene),
        rate,
    )


@pytest.mark.heavy
@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_clock_beyond_the_wide_search_gets_no_drift_and_says_so(installed, tmp_path, rate):
    """Five minutes at 1250 ppm, just beyond the +-1200 ppm looked at: the wide
    search peaks at its limit, so no drift is given and the terminal and the
    record say why; the run succeeds (exit 0) with the stream doubtful, and
    `--set strict=true` fails it (exit 1). At 16 kHz the usual +-250 ppm grid
    found 212 ppm standing out on the smeared blocks, and that drift was given
    (the offset 161 ms off at time zero) until a wide look that peaks at its
    limit kept any drift from being taken."""
    session = tmp_path / "ses-far"
    _drifting_session(session, 300, 1250.0, seed=3)
    said = (
        "str-cam2: no clock drift within +-1200 ppm of the reference's held on its sound, "
        "so none is given"
    )
    result = _run(installed, session, tmp_path / "out", "--set", f"analysis_rate_hz={rate}")
    assert result.returncode == 0, result.stderr
    assert said in result.stderr, result.stderr
    (path,) = (tmp_path / "out" / "_runs").glob("*.json")
    assert any(w.startswith(said) for w in json.loads(path.read_text())["warnings"])
    maps = tmp_path / "out" / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
    found = json.loads((maps / "str-cam2_timebase_map.json").read_text())
    assert found["drift_ppm"] is None and found["status"] == "doubtful", found
    strict = _run(
        installed,
        session,
        tmp_path / "strict",
        "--set",
        "strict=true",
        "--set",
        f"analysis_rate_hz={rate}",
    )
    assert strict.returncode == 1, strict.stderr
    assert said in strict.stdout + strict.stderr


_WIDE_CASE = (
    _BURSTS
    + r"""
import sys
seconds, ppm = 60, float(sys.argv[1])
scene = bursts(np.random.default_rng(3), seconds + 5, 90)
# the camera's clock runs `ppm` fast: its sample n is the scene at n * (1 + ppm * 1e-6)
other = np.interp(np.arange(seconds * rate) * (1 + ppm * 1e-6), np.arange(len(scene)), scene)
found = fine.refine(audio(scene), audio(other), 0.0, True)
print(json.dumps({"drift_ppm": found.drift * 1e6, "pinned": found.drift_pinned,
                  "refuted": found.drift_refuted}))
"""
)


@pytest.mark.heavy
def test_a_drift_beyond_the_usual_range_is_kept_only_when_its_blocks_confirm_it(installed):
    """Beyond +-250 ppm the drift is looked for up to +-1200 ppm, on blocks whose
    frames are smeared until the drift is known: a far drift counts only when the
    blocks taken again along it peak 1.5 times higher. When the wide search peaks
    at its limit (a clock further off) no drift is claimed and the result says so."""
    for ppm in (-1000.0, 600.0):
        found = _run_case(_WIDE_CASE, installed, str(ppm))
        assert found["pinned"] and abs(found["drift_ppm"] - ppm) < 1, (ppm, found)
    # just beyond the limit the wide search peaks at it: no drift, and it says why
    found = _run_case(_WIDE_CASE, installed, "1250")
    assert not found["pinned"] and found["refuted"], found


_MIDDLE_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import coarse

rate, seconds, ppm, start = coarse.COARSE_RATE, 600, -1000.0, 3.0
rng = np.random.default_rng(4)
scene = rng.standard_normal((seconds + 20) * rate) * 0.05
for at in rng.integers(0, (seconds + 19) * rate, 900):
    scene[at : at + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
# the camera starts 3 s into the reference and its clock runs 1000 ppm slow:
# t_reference = t_camera * (1 - 0.001) + 3
camera = np.interp(
    (start + np.arange(seconds * rate) / rate * (1 + ppm * 1e-6)) * rate,
    np.arange(len(scene)),
    scene,
)
found = coarse.search(scene, camera, rate, None)
middle = coarse.at_middle(scene, camera, found.lag, round(0.4 * rate))
true_middle = (start + seconds / 2 * ppm * 1e-6) * rate
print(json.dumps({
    "whole_ms": (found.lag - true_middle) / rate * 1000,
    "middle_ms": (middle.lag - true_middle) / rate * 1000,
    "clear": middle.salience > middle.expected_noise + 2,
}))
"""


def test_with_a_drifting_clock_the_search_starts_where_the_middle_is(installed):
    """A drift smears the whole-overlap peak over every lag the recording passes
    through (0.6 s over 10 minutes at 1000 ppm) and its top can be far from the
    lag at the middle, where the direct-path stage starts and looks only 50 ms
    either side: a 10-minute camera at -1000 ppm came out 245 ppm and 250 ms off.
    The middle 30 s searched again within the drift's reach gives the lag there."""
    found = _run_case(_MIDDLE_CASE, installed)
    assert abs(found["whole_ms"]) > 25, found  # the case is what it claims
    assert abs(found["middle_ms"]) <= 2 and found["clear"], found


_PIECES_CASE = r"""
import json
import numpy as np
from mdivicom_sync_audio import coarse, estimate, pieces

rate, seconds, ppm, start = coarse.COARSE_RATE, 1200, 1000.0, 3.0
def scene(seed, length_s):
    rng = np.random.default_rng(seed)
    out = rng.standard_normal(length_s * rate) * 0.05
    for at in rng.integers(0, (length_s - 1) * rate, int(length_s * 1.5)):
        out[at : at + 200] += rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    return out
found = {}
for kind, length_s in (("drift", seconds), ("unrelated", 600), ("split", 600)):
    reference = scene(4, length_s + 320)
    # the camera starts 3 s into the reference and its clock runs 1000 ppm fast
    source = scene(5, length_s + 320) if kind == "unrelated" else reference
    camera = np.interp(
        (start + np.arange(length_s * rate) / rate * (1 + ppm * 1e-6)) * rate,
        np.arange(len(source)),
        source,
    )
    if kind == "split":  # its second half heard what the reference has 300 s later
        half = len(camera) // 2
        camera[half:] = reference[half + 300 * rate : 2 * half + 300 * rate]
    whole = coarse.search(reference, camera, rate, None)
    line = pieces.search(reference, camera, rate, -len(camera) + 1, len(reference) - 1)
    middle = length_s * rate / 2
    if kind == "drift":
        # where the direct-path stage starts: the lag at the middle of the overlap
        begin = estimate._start(reference, camera, None, "str-cam2", None)
        found["start_ms"] = (begin.lag - (start + seconds / 2 * ppm * 1e-6) * rate) / rate * 1000
        found["offered_ppm"] = begin.drift * 1e6
    found[kind] = {
        "whole_clear": whole.salience >= whole.expected_noise + 2,
        "line": line is not None,
        "middle_ms": None if line is None else (
            line.lag_at(middle, len(camera)) - (start + seconds / 2 * ppm * 1e-6) * rate
        ) / rate * 1000,
        "slope_ppm": None if line is None else line.slope * 1e6,
        "agreeing": None if line is None else line.agreeing,
    }
print(json.dumps(found))
"""


@pytest.mark.heavy
def test_a_match_smeared_by_drift_is_found_on_pieces_and_only_a_clear_one(installed):
    """20 minutes at 1000 ppm pass through 1.2 s of lags: the whole-overlap match
    is smeared below what noise reaches and such a camera failed with "no common
    sound found". Pieces of 30 s each searched against the whole reference agree
    on one line, which gives the direct-path stage its start at the middle of the
    overlap and a drift to confirm. A camera of unrelated sound gives no line, and
    neither does one whose two halves match two places of the reference: each half
    supports a line as well as the other."""
    found = _run_case(_PIECES_CASE, installed)
    drift = found["drift"]
    assert not drift["whole_clear"], drift  # the case is what it claims
    assert drift["line"] and abs(drift["middle_ms"]) <= 10, drift
    assert abs(drift["slope_ppm"] - 1000) <= 30 and drift["agreeing"] >= 20, drift
    assert abs(found["start_ms"]) <= 10 and abs(found["offered_ppm"] - 1000) <= 30, found
    assert not found["unrelated"]["whole_clear"] and not found["unrelated"]["line"], found
    assert not found["split"]["line"], found


@pytest.mark.heavy
def test_a_conformed_camera_in_a_room_over_five_minutes_is_synced(installed, tmp_path):
    """Five minutes of a camera at -999 ppm in a reverberant room: the whole-overlap
    match is smeared over 0.3 s of lags, its top 50 ms or more from the lag at the
    middle, and the middle 30 s did not clear noise, so the direct-path stage started
    out of its reach: the camera came out 125 ms off with a drift of -197 ppm. The
    line 30-s pieces agree on gives the middle, and the drift is measured."""
    truth = _sample(
        installed, tmp_path / "room", "--sessions", "1", "--seed", "11", "--seconds", "300",
        "--drift-ppm", "-999", "--scenes", "room",
    )  # fmt: skip
    result = _run(installed, tmp_path / "room", tmp_path / "out", "--sessions", "ses-*")
    assert result.returncode == 0, result.stderr
    found = _map(tmp_path / "out", "ses-01", "str-cam2")
    assert abs(found["drift_ppm"] + 999) < 1, found
    assert abs(found["offset_s"] - truth["ses-01"]["offsets_s"]["str-cam2"]) * 1000 < 0.5, found


_DRIFT_ROUTE_CASE = r"""
import json
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

def pair(drift_ppm, offset_s, bound_ms, drift_error_ppm):
    return Result(offset_s, drift_ppm, bound_ms, drift_error_ppm, 120.0, 20.0)

# truth: camera 2 runs 100 ppm fast, camera 3 60 ppm slow. The cam1-cam2 pair has the
# tightest offset bound but a poorly measured drift; through camera 3 the drifts
# are measured well. Offsets are at each stream's time zero; 60 s is the middle.
middle = 60.0
def offset(drift_ppm, at_middle):
    return at_middle - middle * (1 + drift_ppm * 1e-6)
streams = ["str-cam1", "str-cam2", "str-cam3"]
pairs = {
    ("str-cam1", "str-cam2"): pair(87.5, offset(87.5, 62.0), 0.3, 15.0),
    ("str-cam1", "str-cam3"): pair(-59.5, offset(-59.5, 65.0), 2.0, 1.0),
    ("str-cam3", "str-cam2"): pair(160.0, offset(160.0, 57.0), 2.0, 2.0),
}
out, routes = combine(pairs, {}, "str-cam1", streams, {s: middle for s in streams})
cam2 = out["str-cam2"]
print(json.dumps({
    "route": routes["str-cam2"],
    "drift_ppm": cam2.drift_ppm,
    "drift_error_ppm": cam2.drift_error_ppm,
    "at_middle": middle * (1 + cam2.drift_ppm * 1e-6) + cam2.offset_s,
    "bound_ms": cam2.error_bound_ms,
    "moved_ms": abs(cam2.offset_s - pairs["str-cam1", "str-cam2"].offset_s) * 1000,
    "drift_via": cam2.drift_via,
    "cam3_drift_via": out["str-cam3"].drift_via,
}))
"""


_FAR_APART_CASE = r"""
import json
from mdivicom_sync_audio.estimate import Result
from mdivicom_sync_audio.network import combine

# camera 2 runs 999 ppm slow, camera 3 999 ppm fast (video conformed, or not):
# each pair with the reference measures its drift, but cameras 2 and 3 are
# 2000 ppm apart, beyond the drift search, so their pair gives none: its offset
# is the lag at the middle (60 s). At the middle camera 2 is at 62 s of the
# reference and camera 3 at 65 s.
middle = 60.0
def offset(drift_ppm, at_middle):
    return at_middle - middle * (1 + drift_ppm * 1e-6)
cam3_at_62 = middle - 3.0 / (1 + 999e-6)  # camera 3's clock when the reference is at 62 s
streams = ["str-cam1", "str-cam2", "str-cam3"]
pairs = {
    ("str-cam1", "str-cam2"): Result(offset(-999, 62.0), -999.0, 0.2, 0.5, 120.0, 20.0),
    ("str-cam1", "str-cam3"): Result(offset(999, 65.0), 999.0, 0.2, 0.5, 120.0, 20.0),
    # measured around camera 2's 60 s (the middle of their overlap)
    ("str-cam3", "str-cam2"): Result(
        cam3_at_62 - middle, None, 0.3, None, 120.0, 20.0, measured_at_s=middle
    ),
}
out, routes = combine(pairs, {}, "str-cam1", streams, {s: middle for s in streams})
print(json.dumps({
    sid: {
        "bound_ms": out[sid].error_bound_ms,
        "at_middle": middle * (1 + out[sid].drift_ppm * 1e-6) + out[sid].offset_s,
        "route": routes[sid],
    }
    for sid in ("str-cam2", "str-cam3")
}))
"""


def test_routes_are_compared_where_a_route_without_drift_measured_its_offset(installed):
    """Two cameras 2000 ppm apart have no drift between them; the route through
    their pair carried its middle lag to time zero at no drift, 120 ms from
    the direct pairs there, and both cameras' bounds grew by that much though
    every route agrees where their pair measured. A route without a drift is
    compared there (camera 3's clock 3 s before its own middle: compared at
    the stream's middle, 3 s at 2000 ppm still put them 6 ms apart)."""
    found = _run_case(_FAR_APART_CASE, installed)
    for sid, at_middle in (("str-cam2", 62.0), ("str-cam3", 65.0)):
        assert found[sid]["route"] == ["str-cam1", sid], found
        assert abs(found[sid]["at_middle"] - at_middle) < 1e-9, found
        assert abs(found[sid]["bound_ms"] - 0.2) < 1e-6, found  # were 120 and 114 ms


def test_the_drift_takes_the_route_whose_drifts_are_best_measured(installed):
    """A pair can pin the offset well and the drift badly: the offset keeps the
    route of the tightest bounds, the drift takes the route of the smallest drift
    errors, and the stream's reference time at its middle stays the offset route's."""
    found = _run_case(_DRIFT_ROUTE_CASE, installed)
    assert found["route"] == ["str-cam1", "str-cam2"], found
    # the record says where each came from: the offset directly, the drift via camera 3
    assert found["drift_via"] == ["str-cam3"] and found["cam3_drift_via"] == [], found
    # (1 - 59.5e-6) * (1 + 160e-6) - 1: the chain through camera 3
    assert abs(found["drift_ppm"] - 100.49) < 0.01, found
    assert abs(found["drift_error_ppm"] - 3.0) < 1e-9, found
    assert abs(found["at_middle"] - 62.0) < 1e-9, found
    # at time zero the offset moved with the drift (0.78 ms); the other routes'
    # disagreement there is in the bound, which covers the move
    assert 0.7 < found["moved_ms"] <= found["bound_ms"], found


def test_a_file_recorded_below_the_analysis_rate_is_timed_on_its_own_band(installed, tmp_path):
    """An 8-kHz recorder analysed at 16 kHz beside a 48-kHz reference: above 4 kHz it
    holds only the resampler's leftovers. Those bands had a vote in the whitened sum
    and bent the early-reflection views, so the offset came out ~0.2 ms late against
    a bound of ~0.12 ms; only the band the file can fill is used now."""
    import numpy as np

    rate, low, start_s = 48_000, 8_000, 3.25
    rng = np.random.default_rng(11)
    scene = rng.standard_normal(40 * rate) * 0.002
    for _ in range(60):
        length = int(rng.uniform(0.05, 0.6) * rate)
        at = int(rng.integers(0, len(scene) - length))
        scene[at : at + length] += rng.standard_normal(length) * np.exp(
            -np.arange(length) / (length / 4)
        )
    session = tmp_path / "ses-low"
    _write(session / "raw/audio/str-a/ref.wav", scene, rate)
    # the recorder's 30 s from 3.25 s on, band-limited to its own rate
    piece = scene[int(start_s * rate) : int((start_s + 30) * rate)]
    spectrum = np.fft.rfft(piece)[: 30 * low // 2 + 1]
    _write(session / "raw/audio/str-b/low.wav", np.fft.irfft(spectrum, 30 * low), low)
    result = _run(installed, session, tmp_path / "out", "--set", "analysis_rate_hz=16000")
    assert result.returncode == 0, result.stderr
    maps = tmp_path / "out" / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
    found = json.loads((maps / "str-b_timebase_map.json").read_text())
    error_ms = abs(found["offset_s"] - start_s) * 1000
    assert error_ms <= found["error_bound_ms"], found
    assert error_ms < 0.06, found
