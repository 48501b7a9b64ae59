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
        "the plugin's return value was not kept: result.streams is a set, not a JSON value",
        "str-cam2: low confidence",
    ]
