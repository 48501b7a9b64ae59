"""Arguments a notebook passes to the Python API, refused before anything runs
when they would otherwise run somewhere or something else than meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdivicomtools import RunOptions, rerun, run_batch, run_plugin, verify_out
from mdivicomtools.errors import EmptyPath, UsageError


@pytest.fixture
def ran(site, dataset, tmp_path, monkeypatch):
    """One succeeded run under tmp_path/out, with the current folder elsewhere."""
    site.plugin("hello")
    record = run_plugin("hello", dataset=str(dataset), out=str(tmp_path / "out"))
    assert record.status == "succeeded"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return record


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda ds, out: run_plugin("hello", dataset=ds, out=""), "out"),
        (lambda ds, out: run_plugin("hello", dataset="", out=out), "dataset"),
        (lambda ds, out: run_plugin("hello", dataset=ds, out=out, work=""), "work"),
        (lambda ds, out: run_batch("hello", dataset=ds, out="", sessions="*"), "out"),
        (lambda ds, out: verify_out(""), "out"),
        (lambda ds, out: rerun("", "latest"), "out"),
        (lambda ds, out: rerun(out, "latest", new_out=""), "new_out"),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_the_current_folder(
    ran, dataset, tmp_path, call, name
):
    with pytest.raises(EmptyPath, match=f"^{name} is an empty path") as raised:
        call(str(dataset), str(tmp_path / "out"))
    assert isinstance(raised.value, UsageError) and raised.value.exit_code == 2
    assert list(Path.cwd().iterdir()) == []  # nothing ran in, or was read from, here


def test_sets_as_one_string_is_refused_rather_than_split_into_characters(ran, dataset, tmp_path):
    with pytest.raises(TypeError, match=r"sets=\['x=1'\]"):
        RunOptions(dataset=str(dataset), out=str(tmp_path / "out"), sets="x=1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sets=\['x=1'\]"):
        rerun(tmp_path / "out", "latest", sets="x=1")


def test_config_may_be_a_path_to_a_config_file(site, dataset, tmp_path):
    site.plugin(
        "echo",
        run_source="def run(dataset_dir, out_dir, config, **kw):\n    return config\n",
    )
    settings = tmp_path / "settings.json"
    settings.write_text('{"max_lag_s": 5}')
    record = run_plugin("echo", dataset=dataset, out=tmp_path / "out", config=settings)
    assert record.status == "succeeded" and record.result == {"max_lag_s": 5}
    with pytest.raises(TypeError, match=r"RunOptions\.config must be a dict"):
        RunOptions(dataset=str(dataset), out=str(tmp_path / "out"), config=[("a", 1)])  # type: ignore[arg-type]


def test_a_numpy_timeout_is_taken_as_seconds(site, dataset, tmp_path):
    """A notebook's `timeout=np.float64(5)` failed with msgspec's `Encoding objects of
    type numpy.float64 is unsupported` once the record was written."""
    import numpy as np

    site.plugin("hello")
    for timeout in (np.float64(30), np.int64(30)):
        options = RunOptions(dataset=str(dataset), out=str(tmp_path / "o"), timeout=timeout)
        assert type(options.timeout) is float and options.timeout == 30.0
    record = run_plugin(
        "hello", dataset=str(dataset), out=str(tmp_path / "out"), timeout=np.float64(30)
    )
    assert record.status == "succeeded" and record.timeout_s == 30.0
