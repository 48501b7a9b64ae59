"""The pytest plugin for plugin authors, used from a separate test project in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap

AUTHOR_TESTS = """
import json
import pytest
from mdivicomtools.testing import assert_plugin_conforms

def test_sample_dataset_is_opensids(mdivicom_sample_dataset, mdivicom_session):
    assert (mdivicom_sample_dataset / "dataset_manifest.yaml").exists()
    assert sorted(p.name for p in (mdivicom_session / "raw" / "audio").iterdir()) == [
        "str-cam1", "str-cam2"]

def test_runs_through_the_real_pipeline(mdivicom_run):
    record = mdivicom_run("counter", config={"pattern": "*.wav"})
    assert record.status == "succeeded"
    out = json.loads((__import__("pathlib").Path(record.out_dir) / "count.json").read_text())
    assert out == {"files": 2}

def test_conforms():
    assert_plugin_conforms("counter")

def test_a_broken_plugin_is_reported():
    with pytest.raises(pytest.fail.Exception, match="callable: .*must accept"):
        assert_plugin_conforms("broken-sig")

def test_a_plugin_that_is_not_installed_fails_with_one_line():
    # it raised PluginNotFound from inside mdivicomtools
    with pytest.raises(pytest.fail.Exception, match="plugin 'countr': no plugin named 'countr'"):
        assert_plugin_conforms("countr")

def test_the_options_are_the_commands():
    assert_plugin_conforms("counter", config={"pattern": "*.wav"})
    # a run_plugin option the check does not take is named as the helper's
    with pytest.raises(TypeError, match="assert_plugin_conforms"):
        assert_plugin_conforms("counter", sets=["pattern=*.wav"])
"""

COUNTER = """
import json, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    files = list(pathlib.Path(dataset_dir).rglob(config.get("pattern", "*")))
    if not dry_run:
        pathlib.Path(out_dir, "count.json").write_text(json.dumps({"files": len(files)}))
        pathlib.Path(out_dir, "provenance.json").write_text("{}")
"""


def test_fixtures_from_a_separate_project(site, tmp_path):
    site.plugin("counter", run_source=COUNTER)
    site.plugin("broken-sig", run_source="def run(dataset_dir):\n    pass\n")
    project = tmp_path / "author-project"
    project.mkdir()
    (project / "test_counter.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout
