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
            assert abs(found["offset_s"] - true_offset) * 1000 < 1.0, found
