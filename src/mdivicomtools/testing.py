"""pytest fixtures for plugin authors (registered as the pytest plugin `mdivicomtools`).

Installing mdivicomtools makes these available in any test suite:

    def test_my_plugin_syncs(mdivicom_run):
        record = mdivicom_run("my-plugin", config={"max_lag_s": 5})
        assert record.status == "succeeded"

    def test_my_plugin_conforms():
        assert_plugin_conforms("my-plugin")      # from mdivicomtools.testing

Everything runs through the real pipeline (discovery, validation, staging,
records) in pytest's temporary folders. Imports stay inside the fixtures, so
loading this plugin costs every pytest run almost nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mdivicomtools.model.run import RunRecord

_COUNTER = itertools.count()


@pytest.fixture
def mdivicom_sample_dataset(tmp_path: Path) -> Path:
    """A small, well-formed openSIDS dataset (two sessions, two audio streams each)."""
    from mdivicomtools.authoring.sampledata import make_sample_dataset

    return make_sample_dataset(tmp_path / "mdivicom-sample")


@pytest.fixture
def mdivicom_session(mdivicom_sample_dataset: Path) -> Path:
    """The first session folder of the sample dataset (what most plugins get as dataset)."""
    return mdivicom_sample_dataset / "sessions" / "ses-01"


@pytest.fixture
def mdivicom_run(tmp_path: Path, mdivicom_session: Path) -> Callable[..., RunRecord]:
    """Run a plugin through the real pipeline into a fresh output folder; returns the record.

    `dataset` defaults to the sample session; other keyword arguments go to
    mdivicomtools.run_plugin (config, sets, backend, dry_run, timeout, ...).
    """
    from mdivicomtools.runner import run_plugin

    def run(ref: str, *, dataset: str | Path | None = None, **options: Any) -> RunRecord:
        out = tmp_path / f"mdivicom-out-{next(_COUNTER)}"
        return run_plugin(ref, dataset=dataset or mdivicom_session, out=out, **options)

    return run


def assert_plugin_conforms(
    ref: str,
    *,
    dataset: str | Path | None = None,
    config: dict[str, Any] | None = None,
    backend: str | None = None,
) -> None:
    """Fail the test with every failing check of `mdivicom plugins check REF`.

    The options are the command's (`--dataset`, `--config`, `--backend`). A
    plugin that is not installed, or a reference that names several, fails the
    test with the command's one line rather than an error from inside
    mdivicomtools.
    """
    from mdivicomtools.authoring.check import check_plugin
    from mdivicomtools.errors import UsageError

    try:
        checks = check_plugin(ref, dataset=dataset, config=config, backend=backend)
    except UsageError as exc:
        pytest.fail(f"plugin {ref!r}: {exc}", pytrace=False)
    failed = [f"{c.name}: {c.detail}" for c in checks if c.status == "fail"]
    if failed:
        pytest.fail(f"plugin {ref!r} does not conform:\n  " + "\n  ".join(failed), pytrace=False)
