"""The layout is the architecture: no import cycles, and each layer imports only below it.

The layers, bottom to top (docs/architecture.md draws them):

    common, errors, _version      leaf helpers
    model                         the shared vocabulary (Structs)
    settings                      the user's config file
    discovery records bundles execution   siblings that never import each other
    hooks, resultbundle           extension points; the plugin authors' facade
    runner                        one run
    batch                         many sessions
    authoring schemas reference   for plugin authors and the docs
    testing                       the pytest plugin, over authoring
    cli, __main__                 the command

Every import counts, including those under TYPE_CHECKING and inside functions.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mdivicomtools

SRC = Path(mdivicomtools.__file__).parent
LAYERS = {
    "common": 0,
    "errors": 0,
    "_version": 0,
    "model": 1,
    "settings": 2,
    "discovery": 3,
    "records": 3,
    "bundles": 3,
    "execution": 3,
    "hooks": 4,
    "resultbundle": 4,
    "runner": 5,
    "batch": 6,
    "authoring": 7,
    "schemas": 7,
    "reference": 7,
    "testing": 8,
    "cli": 9,
    "__main__": 10,
}


def _module_name(path: Path) -> str:
    parts = ["mdivicomtools", *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every mdivicomtools module `name` imports, resolved to modules where they exist."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mdivicomtools"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mdivicomtools"):
            assert node.level == 0, f"{name} uses a relative import"
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    found.discard(name)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:
        return "mdivicomtools", 11
    return parts[1], LAYERS[parts[1]]


def test_every_module_has_a_layer():
    unknown = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LAYERS))
    assert unknown == [], f"add these to LAYERS and docs/architecture.md: {unknown}"


def test_no_import_cycles():
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert cycles == []


def test_layers_import_only_downwards():
    upward = []
    for module, targets in GRAPH.items():
        package, rank = _layer(module)
        for target in targets:
            target_package, target_rank = _layer(target)
            if target_package != package and target_rank >= rank:
                upward.append(f"{module} -> {target}")
    assert sorted(upward) == []


PUBLIC = {
    "mdivicomtools": [
        "BatchOptions",
        # the exceptions a Python caller catches (docs/python-api.md)
        "BatchSummaryInterrupted",
        "MdivicomError",
        "RecordNotWritten",
        "RunInterrupted",
        "UsageError",
        "ValidationFailed",
        "RunOptions",
        "RunOutcome",
        "RunRecord",
        "RunRequest",
        "__version__",
        "discover",
        "hookimpl",
        "resolve",
        "run_batch",
        "run_plugin",
    ],
    "mdivicomtools.testing": [
        "assert_plugin_conforms",
        "mdivicom_run",
        "mdivicom_sample_dataset",
        "mdivicom_session",
    ],
    "mdivicomtools.resultbundle": [
        "FileTime",
        "ResultBundle",
        "validate_file",
        "write_resultbundle",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_imports(module):
    loaded = importlib.import_module(module)
    for name in PUBLIC[module]:
        assert getattr(loaded, name) is not None, f"{module}.{name}"
    if hasattr(loaded, "__all__"):
        for name in loaded.__all__:
            assert getattr(loaded, name) is not None, f"{module}.{name}"


def test_public_run_plugin_takes_options_or_keywords():
    import inspect

    from mdivicomtools import RunOptions, run_plugin

    parameters = inspect.signature(run_plugin).parameters
    assert list(parameters)[:2] == ["ref", "options"]
    options = RunOptions.build(dataset=Path("/d"), out="/o", sets=["a=1"])
    assert options.dataset == "/d" and options.sets == ("a=1",)
    with pytest.raises(AttributeError):
        options.dataset = "/x"  # frozen: decided once
