"""Hooks through pluggy's own machinery: ordering, wrappers, guards, the backend registry."""

from __future__ import annotations

import pytest

from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability, BackendUnavailable
from mdivicomtools.hooks.manager import load_hooks
from mdivicomtools.runner import run_plugin

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "out.txt").write_text("x")
"""


class Recorder:
    """Hook modules that append to one shared list, to see pluggy's call order."""

    def __init__(self) -> None:
        self.calls: list[str] = []


def test_tryfirst_trylast_and_wrapper_work_as_pluggy_documents(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    seen = Recorder()

    class First:
        @hookimpl(tryfirst=True)
        def mdivicom_capture_provenance(self, outcome):
            seen.calls.append("first")

    class Last:
        @hookimpl(trylast=True)
        def mdivicom_capture_provenance(self, outcome):
            seen.calls.append("last")
            return {"last": True}

    class Around:
        @hookimpl(wrapper=True)
        def mdivicom_capture_provenance(self, outcome):
            seen.calls.append("before")
            results = yield
            seen.calls.append(f"after {len(results)}")
            return results

    hooks = load_hooks(extra=[("last", Last()), ("around", Around()), ("first", First())])
    assert {m.name: m.status for m in hooks.modules}["around"] == "ok"
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", hooks=hooks)
    assert seen.calls[0] == "before" and seen.calls[-1].startswith("after")
    inner = seen.calls[1:-1]
    assert inner[0] == "first" and inner[-1] == "last"
    assert record.extensions["last"] == {"last": True}
    assert record.hook_errors == []


def test_a_raising_wrapper_is_reported_and_the_call_goes_on(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)

    class BadBefore:
        @hookimpl(wrapper=True)
        def mdivicom_capture_provenance(self, outcome):
            raise RuntimeError("before yield")
            yield  # pragma: no cover

    class BadAfter:
        @hookimpl(wrapper=True)
        def mdivicom_finalize_outputs(self, outcome):
            yield
            raise ValueError("after yield")

    class Good:
        @hookimpl
        def mdivicom_capture_provenance(self, outcome):
            return {"ok": 1}

    hooks = load_hooks(
        extra=[("bad-before", BadBefore()), ("bad-after", BadAfter()), ("good", Good())]
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", hooks=hooks)
    assert record.status == "succeeded"
    assert record.extensions["good"] == {"ok": 1}
    errors = {(e.plugin, e.hook): e.error for e in record.hook_errors}
    assert errors == {
        ("bad-before", "mdivicom_capture_provenance"): "RuntimeError: before yield",
        ("bad-after", "mdivicom_finalize_outputs"): "ValueError: after yield",
    }
    assert (tmp_path / "out" / "writer" / "out.txt").exists()


def test_an_old_style_hookwrapper_is_broken_at_load():
    class Old:
        @hookimpl(hookwrapper=True)
        def mdivicom_capture_provenance(self, outcome):
            yield

    modules = {m.name: m for m in load_hooks(extra=[("old", Old())]).modules}
    assert modules["old"].status == "broken"
    assert "old-style hookwrapper=True" in modules["old"].error
    assert "use @hookimpl(wrapper=True)" in modules["old"].error


class Named:
    kinds = frozenset({"python"})

    def __init__(self, name: str) -> None:
        self.name = name

    def availability(self) -> Availability:
        return Availability(available=True, engine=self.name)

    def execute(self, request, outcome, log):  # pragma: no cover - never chosen here
        raise AssertionError


def test_a_duplicate_backend_name_is_a_conflict_naming_every_provider():
    class One:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [Named("twin")]

    class Two:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [Named("twin")]

    with load_hooks(extra=[("one", One()), ("two", Two())]).get_backends() as registry:
        assert {name: sorted(mods) for name, mods in registry.conflicts.items()} == {
            "twin": ["one", "two"]
        }
        (item,) = [i for i in registry.items() if i.name == "twin"]
        assert item.conflict and not item.available
        assert sorted(item.provided_by) == ["one", "two"]
        with pytest.raises(BackendUnavailable, match="provided by several hook modules"):
            registry.get_backend("twin", "python")
        # auto never picks a conflicted backend
        assert registry.choose("auto", "python").name == "python"


def test_a_raising_backend_hook_is_named_when_its_backend_is_missing():
    class Broken:
        @hookimpl
        def mdivicom_execution_backends(self):
            raise ImportError("libfoo.so: cannot open shared object file")

    registry = load_hooks(extra=[("site-slurm", Broken())]).get_backends()
    with registry, pytest.raises(BackendUnavailable) as excinfo:
        registry.get_backend("slurm", "container")
    message = str(excinfo.value)
    assert "backend 'slurm' is not installed; installed backends: " in message
    assert "site-slurm: ImportError: libfoo.so: cannot open shared object file" in message


def test_a_backend_of_a_disabled_module_names_the_module_not_pip(monkeypatch):
    """With the docker backend's module in MDIVICOM_DISABLE_HOOKS, `--backend docker`
    said "is not installed; install it with: pip install 'mdivicomtools[docker]'",
    though it was installed: reinstalling changed nothing."""

    class Site:
        @hookimpl
        def mdivicom_execution_backends(self):
            return [Named("sitebox")]

    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "site-box")
    registry = load_hooks(extra=[("site-box", Site())]).get_backends()
    with registry:
        with pytest.raises(BackendUnavailable) as excinfo:
            registry.get_backend("sitebox", "container")
        message = str(excinfo.value)
        assert message.startswith("backend 'sitebox' is not installed; installed backends: ")
        assert message.endswith(
            "; disabled hook modules, not loaded, may provide it: "
            "'site-box' (disabled by MDIVICOM_DISABLE_HOOKS)"
        )
        assert "pip install" not in message
        with pytest.raises(BackendUnavailable) as excinfo:
            registry.choose("auto", "other-kind")
        assert str(excinfo.value) == (
            "no installed backend runs other-kind plugins; disabled hook modules, not "
            "loaded, may provide one: 'site-box' (disabled by MDIVICOM_DISABLE_HOOKS)"
        )


def test_a_missing_engine_backend_with_nothing_disabled_says_how_to_install_it():
    from mdivicomtools.common.install import install_hint
    from mdivicomtools.execution.registry import BackendRegistry

    with BackendRegistry([]) as registry, pytest.raises(BackendUnavailable) as excinfo:
        registry.get_backend("docker", "container")
    # from this checkout, the backend's own folder (tests/test_install_hint.py)
    assert str(excinfo.value) == (
        "backend 'docker' is not installed; installed backends: none; "
        f"install it with: {install_hint('docker')}"
    )


def test_get_backend_lists_the_valid_choices():
    with load_hooks().get_backends() as registry, pytest.raises(BackendUnavailable) as excinfo:
        registry.get_backend("python", "container")
    assert "backend 'python' cannot run container plugins; it runs: python" in str(excinfo.value)
    assert "backends that run container plugins:" in str(excinfo.value)


def test_backends_list_shows_a_failing_backend_hook(site):
    site.module(
        "h_broken_backend",
        "from mdivicomtools import hookimpl\n"
        "@hookimpl\ndef mdivicom_execution_backends():\n    raise RuntimeError('no licence')\n",
    )
    site.distribution(
        "broken-backend", {"broken-backend": "h_broken_backend"}, group="mdivicomtools.hooks"
    )
    result = site.cli("backends", "list")
    assert result.returncode == 0
    assert (
        "Warning: hook module 'broken-backend' could not provide backends: "
        "RuntimeError: no licence" in result.stderr
    )
