"""Warnings a python plugin returns reach the record's `warnings` and the terminal."""

from __future__ import annotations

import json

import pytest

from mdivicomtools import run_plugin

WARNS = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"offset_s": 1.5, "warnings": ["str-cam2: low confidence 3.1 (< 6)"]}
"""

BAD_WARNINGS = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"warnings": "not a list"}
"""


@pytest.mark.parametrize("isolate", [False, True])
def test_returned_warnings_are_recorded(site, dataset, tmp_path, isolate):
    site.plugin("warner", run_source=WARNS)
    messages: list[str] = []
    record = run_plugin(
        "warner", dataset=dataset, out=tmp_path / "out", isolate=isolate, progress=messages.append
    )
    assert record.status == "succeeded"
    assert record.warnings == ["str-cam2: low confidence 3.1 (< 6)"]
    assert record.result == {"offset_s": 1.5, "warnings": ["str-cam2: low confidence 3.1 (< 6)"]}
    assert "warning: str-cam2: low confidence 3.1 (< 6)" in messages


def test_returned_warnings_on_the_terminal_and_in_the_saved_record(site, dataset, tmp_path):
    site.plugin("warner", run_source=WARNS)
    result = site.cli(
        "run", "warner", "--dataset", str(dataset), "--out", str(tmp_path / "o"), "--json"
    )
    assert result.returncode == 0
    assert "[mdivicom] warning: str-cam2: low confidence 3.1 (< 6)" in result.stderr
    assert json.loads(result.stdout)["warnings"] == ["str-cam2: low confidence 3.1 (< 6)"]


def test_warnings_that_are_not_strings_are_reported_not_used(site, dataset, tmp_path):
    site.plugin("sloppy", run_source=BAD_WARNINGS)
    record = run_plugin("sloppy", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded"
    assert record.warnings == [
        "the plugin returned `warnings` that is not a list of strings; it was not used"
    ]


SAYS_FAILED = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"status": config.get("status", "failed"), "error": "no wav files",
            "warnings": ["str-cam1: empty"]}
"""


@pytest.mark.parametrize("isolate", [False, True])
def test_a_returned_failing_status_that_fails_nothing_is_named(site, dataset, tmp_path, isolate):
    # `return {"status": "failed", ...}`, after the examples' `{"status": "ok"}`, was
    # recorded `succeeded` without a word: the batch said succeeded, --resume skipped it
    site.plugin("sayer", run_source=SAYS_FAILED)
    record = run_plugin("sayer", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "succeeded"
    assert record.warnings == [
        "str-cam1: empty",
        "the plugin returned status 'failed' but did not raise, so the run counts as "
        "succeeded; a plugin fails its run by raising an exception",
    ]
    for fine in ("ok", "dry_run", "succeeded", "warnings"):
        again = run_plugin(
            "sayer",
            dataset=dataset,
            out=tmp_path / fine,
            isolate=isolate,
            config={"status": fine},
        )
        assert again.warnings == ["str-cam1: empty"], fine


UNSAFE_BESIDE_WARNINGS = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"streams": {"cam1", "cam2"}, "warnings": ["str-cam2: low confidence"]}
"""


@pytest.mark.parametrize("isolate", [False, True])
def test_warnings_beside_a_value_that_is_not_kept_are_still_recorded(
    site, dataset, tmp_path, isolate
):
    """A set (a numpy integer, a Path) beside them dropped the whole return value,
    and with it the warnings the plugin asked a person to see."""
    site.plugin("mixed", run_source=UNSAFE_BESIDE_WARNINGS)
    record = run_plugin("mixed", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "succeeded"
    assert record.result is None
    assert record.warnings == [
        "the plugin's return value was not kept: result.streams is a set, not a JSON value; "
        "convert it before returning: float(x), int(x) or x.tolist() for "
        "numpy values, str(path), a list for a tuple or set",
        "str-cam2: low confidence",
    ]


WARNS_PER_SESSION = """
from pathlib import Path

def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if Path(dataset_dir).name == "ses-01":
        return {}
    return {"warnings": ["str-cam2: no common sound found", "str-cam3: only 1 block"]}
"""


def test_a_batch_shows_each_session_s_warnings(site, tmp_path):
    """A batch printed no session's warnings: a session that succeeded with a stream
    it could not sync showed `succeeded` and nothing else, on the terminal and in the
    summary; the progress line and the table's NOTE now give their count and the
    first, and the summary lists them."""
    site.plugin("warner", run_source=WARNS_PER_SESSION)
    study = tmp_path / "study"
    for name in ("ses-01", "ses-02"):
        (study / "sessions" / name).mkdir(parents=True)
        (study / "sessions" / name / "a.txt").write_text("x\n")
    out = tmp_path / "out"
    args = ("run", "warner", "--dataset", str(study), "--out", str(out), "--sessions", "ses-*")
    result = site.cli(*args, "--jobs", "1")
    assert result.returncode == 0, result.stderr
    said = "2 warning(s): str-cam2: no common sound found (and 1 more in its run record)"
    assert f"[mdivicom] ses-02 succeeded, {said} (2/2)" in result.stderr, result.stderr
    assert "[mdivicom] ses-01 succeeded (1/2)" in result.stderr, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("ses-02")]
    assert row.split()[1] == "succeeded" and row.endswith(f"  {said}"), row
    [summary] = (out / "_batches").glob("*.json")
    sessions = {s["session"]: s for s in json.loads(summary.read_text())["sessions"]}
    assert sessions["ses-01"]["warnings"] == []
    assert sessions["ses-02"]["warnings"] == [
        "str-cam2: no common sound found",
        "str-cam3: only 1 block",
    ]
