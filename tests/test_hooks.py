"""Hook modules: loading from real entry points, isolation, and every hook's effect."""

from __future__ import annotations

import ast
import json
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from mdivicomtools import hookimpl
from mdivicomtools.hooks import specs as hookspecs
from mdivicomtools.hooks.manager import HOOK_NAMES, load_hooks
from mdivicomtools.runner import ValidationFailed, run_plugin
from pluginsite import MDIVICOM, container_manifest, pip_install_target

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "out.txt").write_text("x")
"""

PROVENANCE = """
import os
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_capture_provenance(request, outcome):
    return {"lab": os.environ.get("LAB_NAME", "none"), "plugin": request.plugin.ref,
            "status": outcome.status}
"""


def hook_dist(site, name, source, dist=None):
    module = "h_" + name.replace("-", "_")
    site.module(module, source)
    site.distribution(dist or f"{name}-hooks", {name: module}, group="mdivicomtools.hooks")


def test_provenance_hook_from_a_real_entry_point(site, dataset, tmp_path, monkeypatch):
    site.plugin("writer", run_source=WRITE)
    hook_dist(site, "site-prov", PROVENANCE)
    monkeypatch.setenv("LAB_NAME", "interaction-lab")
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert record.extensions == {
        "site-prov": {"lab": "interaction-lab", "plugin": "lab/writer", "status": "succeeded"}
    }
    saved = json.loads((tmp_path / "out" / "_runs" / f"{record.run_id}.json").read_text())
    assert saved["extensions"]["site-prov"]["lab"] == "interaction-lab"


def test_raising_and_unusable_hooks_are_reported_by_name_and_lose_nothing(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    hook_dist(site, "good", PROVENANCE)
    hook_dist(
        site,
        "raiser",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_capture_provenance(request, outcome):
    raise RuntimeError("no database")
@hookimpl
def mdivicom_finalize_outputs(request, outcome):
    raise OSError("disk quota")
""",
    )
    hook_dist(
        site,
        "odd",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_capture_provenance():
    return {"when": object()}
""",
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded"
    assert set(record.extensions) == {"good"}
    errors = {(e.plugin, e.hook): e.error for e in record.hook_errors}
    assert errors == {
        ("raiser", "mdivicom_finalize_outputs"): "OSError: disk quota",
        ("raiser", "mdivicom_capture_provenance"): "RuntimeError: no database",
        ("odd", "mdivicom_capture_provenance"): (
            "ContractBroken: not kept: $.when is an object, not a JSON value; return JSON "
            "values only (str, int, float, bool, None, lists, and dicts with str keys): "
            "convert the others first, e.g. str(path), when.isoformat()"
        ),
    }
    assert (tmp_path / "out" / "writer" / "out.txt").exists()
    log = (tmp_path / "out" / record.log).read_text()
    assert "hook 'raiser' (mdivicom_capture_provenance) failed: RuntimeError: no database" in log


def test_validation_hook_problems_stop_the_run(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    hook_dist(
        site,
        "site-rules",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_run(request):
    if "participants" not in request.config:
        return ["config.participants is required at this site"]
""",
    )
    hook_dist(
        site,
        "broken-rule",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_run(request):
    raise ValueError("cannot reach the ethics database")
""",
    )
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    # each site module's problem names it: which package's rule refused the run
    assert sorted(excinfo.value.problems) == [
        "config.participants is required at this site (validation hook 'site-rules')",
        "validation hook 'broken-rule' raised ValueError: cannot reach the ethics database; "
        "fix that module, or skip it for a run with MDIVICOM_DISABLE_HOOKS=broken-rule",
    ]
    assert not (tmp_path / "out").exists()


def test_two_site_validators_are_each_named_and_the_core_s_problems_are_not(
    site, dataset, tmp_path
):
    """Two lab packages refused one run: the problems were listed together with no
    word of whose rule each was, nor what MDIVICOM_DISABLE_HOOKS would take."""
    site.plugin("writer", run_source=WRITE)
    for name, problem in (("consent", "no consent.json"), ("naming", "not a BIDS name")):
        hook_dist(
            site,
            name,
            "from mdivicomtools import hookimpl\n"
            "@hookimpl\n"
            f"def mdivicom_validate_run():\n    return [{problem!r}]\n",
        )
    ran = site.cli(
        "run", "writer", "--dataset", str(dataset / "missing"), "--out", str(tmp_path / "o")
    )
    assert ran.returncode == 2
    lines = ran.stderr.splitlines()
    assert "  - no consent.json (validation hook 'consent')" in lines
    assert "  - not a BIDS name (validation hook 'naming')" in lines
    # the built-in validation's own problem is not labelled
    [core] = [line for line in lines if "does not exist" in line]
    assert "validation hook" not in core


def test_finalize_hook_can_fail_a_run_before_promotion(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    hook_dist(
        site,
        "qc",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_finalize_outputs(request, outcome):
    if outcome.status == "succeeded" and not (outcome.staging_dir / "report.json").exists():
        outcome.fail("QualityCheck", "no report.json written")
""",
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert record.status == "failed" and record.error.message == "no report.json written"
    assert not (tmp_path / "out" / "writer").exists()


def test_execution_backend_from_a_hook_module(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    hook_dist(
        site,
        "echo-backend",
        """
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability

class EchoBackend:
    name = "echo"
    kinds = frozenset({"python"})
    def availability(self):
        return Availability(available=True, engine="echo 1.0")
    def execute(self, request, outcome, log):
        (outcome.staging_dir / "echo.txt").write_text(request.plugin.ref)
        log.write("echo ran\\n")
        outcome.status, outcome.exit_code, outcome.engine = "succeeded", 0, "echo 1.0"

@hookimpl
def mdivicom_execution_backends():
    return [EchoBackend()]
""",
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out", backend="echo")
    assert record.backend.name == "echo" and record.backend.engine == "echo 1.0"
    assert (tmp_path / "out" / "writer" / "echo.txt").read_text() == "lab/writer"


def test_the_dataset_check_covers_every_backend(site, dataset, tmp_path):
    # a container plugin run by a third-party backend that writes into the dataset:
    # the runner's check, not the backend, must catch it, as for a python plugin
    site.manifest("tool.json", container_manifest("tool", {"image": "localhost/tool:1"}))
    hook_dist(
        site,
        "scribble-backend",
        """
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability

class ScribbleBackend:
    name = "scribble"
    kinds = frozenset({"container"})
    def availability(self):
        return Availability(available=True, engine="scribble 1.0")
    def execute(self, request, outcome, log):
        (request.dataset_dir / "a.txt").write_text("scribbled over")
        outcome.status, outcome.exit_code, outcome.engine = "succeeded", 0, "scribble 1.0"

@hookimpl
def mdivicom_execution_backends():
    return [ScribbleBackend()]
""",
    )
    record = run_plugin("tool", dataset=dataset, out=tmp_path / "out", backend="scribble")
    assert record.status == "failed" and record.error.type == "DatasetModified"
    assert record.error.message == (
        "the plugin modified the dataset, which is read-only: changed a.txt"
    )
    assert not (tmp_path / "out" / "tool").exists()


def test_broken_hook_modules_are_isolated(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)
    hook_dist(
        site,
        "typo",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_capture_provenence(request, outcome):
    return {"x": 1}
""",
    )
    hook_dist(
        site,
        "badargs",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_run(request, colour):
    return []
""",
    )
    site.distribution("missing-hooks", {"missing": "h_not_there"}, group="mdivicomtools.hooks")
    hook_dist(site, "good", PROVENANCE)
    modules = {m.name: m for m in load_hooks().modules}
    assert modules["typo"].status == "broken"
    assert modules["typo"].error.startswith(
        "unknown hook mdivicom_capture_provenence (did you mean mdivicom_capture_provenance?)"
    )
    assert modules["badargs"].status == "broken" and "colour" in modules["badargs"].error
    assert modules["missing"].status == "broken"
    assert modules["missing"].error.startswith("import failed: ModuleNotFoundError")
    assert modules["good"].status == "ok" and modules["good"].hooks == [
        "mdivicom_capture_provenance"
    ]
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert record.status == "succeeded" and set(record.extensions) == {"good"}


def test_a_backend_of_a_broken_hook_module_is_said_to_be_missing_with_it(site, dataset, tmp_path):
    """A site's backend module whose `import pyslurm` failed: `--backend slurm` said
    only `backend 'slurm' is not installed`, and `backends list` left the backend out
    without a word, so the user went to reinstall a package that was installed."""
    site.plugin("writer", run_source=WRITE)
    site.module("h_site_slurm", "import pyslurm_not_here\n")
    site.distribution("site-slurm", {"site-slurm": "h_site_slurm"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    run = site.cli("run", "writer", "--dataset", str(dataset), "--out", str(out),
                   "--backend", "slurm")  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines()[-1].endswith(
        "; broken hook modules, left out, may provide it: 'site-slurm' (import failed: "
        "ModuleNotFoundError: No module named 'pyslurm_not_here'; install what it imports "
        "or fix it, or leave it out with MDIVICOM_DISABLE_HOOKS=site-slurm)"
    )
    listed = site.cli("backends", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "slurm" not in {b["name"] for b in json.loads(listed.stdout)}
    assert (
        "hook module 'site-slurm' is broken and left out, so no backend of its is listed: "
        "import failed: ModuleNotFoundError"
    ) in listed.stderr


def test_a_disabled_name_of_two_entry_points_is_named_once():
    """Two distributions with a hook module of one name, disabled by that name: the
    "not installed" error listed `'lab-prov' (disabled by ...)` twice."""
    from mdivicomtools.execution.base import BackendUnavailable
    from mdivicomtools.execution.registry import BackendRegistry

    why = "disabled by MDIVICOM_DISABLE_HOOKS"
    registry = BackendRegistry([], disabled=[("lab-prov", why), ("lab-prov", why)])
    with pytest.raises(BackendUnavailable) as raised:
        registry.get_backend("slurm", "python")
    assert str(raised.value).count("'lab-prov'") == 1


def test_a_misspelt_backend_gets_its_did_you_mean_beside_disabled_modules():
    """`--backend nicee` said `did you mean 'nice'?` until any hook module was disabled
    (a site's `disable_hooks` in the user config, for good): then the message named
    only the disabled modules, as if the backend might be one of theirs."""
    from mdivicomtools.execution.base import Availability, BackendUnavailable
    from mdivicomtools.execution.registry import BackendRegistry

    class Nice:
        name, kinds = "nice", frozenset({"python"})

        def availability(self):
            return Availability(available=True)

        def execute(self, request, outcome, log):
            raise AssertionError("never run")

    why = "disabled by disable_hooks in the user config"
    registry = BackendRegistry([("lab-nice", Nice())], disabled=[("old-site", why)])
    with pytest.raises(BackendUnavailable) as raised:
        registry.get_backend("nicee", "python")
    assert str(raised.value) == (
        "backend 'nicee' is not installed; installed backends: nice; did you mean 'nice'?"
        f"; disabled hook modules, not loaded, may provide it: 'old-site' ({why})"
    )


def test_disable_hooks_by_name(site, dataset, tmp_path, monkeypatch):
    site.plugin("writer", run_source=WRITE)
    hook_dist(site, "site-prov", PROVENANCE)
    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "site-prov, other")
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert record.extensions == {}
    (module,) = [m for m in load_hooks().modules if m.name == "site-prov"]
    assert module.status == "disabled" and module.error == "disabled by MDIVICOM_DISABLE_HOOKS"


def test_disable_hooks_in_the_user_config(site, dataset, tmp_path, monkeypatch):
    """`config show` listed a `disable_hooks` setting, yet the user config refused the
    key: a module could be switched off only per shell. The file's list is used, and
    MDIVICOM_DISABLE_HOOKS, when set, replaces it (as the environment does for every
    setting); each message names where the names came from."""
    site.plugin("writer", run_source=WRITE)
    hook_dist(site, "site-prov", PROVENANCE)
    hook_dist(site, "lab-prov", PROVENANCE)
    config = tmp_path / "config.toml"
    config.write_text('disable_hooks = ["site-prov", "lab-prv"]\n', encoding="utf-8")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    monkeypatch.delenv("MDIVICOM_DISABLE_HOOKS", raising=False)
    hooks = load_hooks()
    status = {m.name: (m.status, m.error) for m in hooks.modules if not m.builtin}
    assert status["site-prov"] == ("disabled", "disabled by disable_hooks in the user config")
    assert status["lab-prov"][0] == "ok"
    [warning] = hooks.warnings
    assert warning.startswith(
        "disable_hooks in the user config names 'lab-prv', but no installed hook module has "
        "that name (did you mean 'lab-prov'?); installed: "
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    assert set(record.extensions) == {"lab-prov"}
    shown = site.cli("config", "show", "--json", MDIVICOM_CONFIG_FILE=str(config))
    [row] = [r for r in json.loads(shown.stdout) if r["name"] == "disable_hooks"]
    assert (row["value"], row["origin"]) == ("site-prov,lab-prv", "user config file")
    # the environment replaces the file's list
    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "lab-prov")
    status = {m.name: m.status for m in load_hooks().modules}
    assert (status["site-prov"], status["lab-prov"]) == ("ok", "disabled")


def test_disable_hooks_names_that_disable_nothing_are_warned_about(site, dataset, monkeypatch):
    """A misspelt MDIVICOM_DISABLE_HOOKS name, or a built-in one, left the module
    running without a word: the operator believed it off."""
    site.plugin("writer", run_source=WRITE)
    hook_dist(site, "site-prov", PROVENANCE)
    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "site-prv,mdivicomtools.host")
    typo = (
        "MDIVICOM_DISABLE_HOOKS names 'site-prv', but no installed hook module has that name "
        "(did you mean 'site-prov'?); installed: site-prov"
    )
    builtin = (
        "MDIVICOM_DISABLE_HOOKS names 'mdivicomtools.host', a built-in hook module, which "
        "cannot be disabled; it is still used"
    )
    hooks = load_hooks(
        entry_points=[
            ep for ep in entry_points(group="mdivicomtools.hooks") if ep.name == "site-prov"
        ]
    )
    assert hooks.warnings == [builtin, typo]
    listed = site.cli("hooks", "list", "--json")
    assert listed.returncode == 0
    assert (
        f"Warning: {builtin}\n" in listed.stderr and "'site-prv', but no installed" in listed.stderr
    )
    ran = site.cli("run", "writer", "--dataset", str(dataset), "--out", str(dataset.parent / "o"))
    assert ran.returncode == 0, ran.stderr
    assert f"[mdivicom] warning: {builtin}\n" in ran.stderr
    monkeypatch.setenv("MDIVICOM_DISABLE_HOOKS", "site-prov")
    assert load_hooks().warnings == []


def test_what_a_hook_module_prints_never_breaks_json_on_stdout(site, dataset):
    """A site module's debugging print (on import, in a hook) went to stdout, so
    `hooks list --json`, `backends list --json` and `run --json` were not JSON."""
    site.plugin("writer", run_source=WRITE)
    hook_dist(
        site,
        "chatty",
        """
print("chatty module imported")
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_capture_provenance(request, outcome):
    print("chatty hook called")
    return {"chatty": True}
""",
    )
    for args in (
        ("hooks", "list", "--json"),
        ("backends", "list", "--json"),
        ("run", "writer", "--dataset", str(dataset), "--out", str(dataset.parent / "o"), "--json"),
    ):
        result = site.cli(*args)
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)
        assert "chatty module imported" in result.stderr
    assert "chatty hook called" in result.stderr
    assert json.loads(result.stdout)["extensions"] == {"chatty": {"chatty": True}}


def test_in_process_modules_can_be_registered(site, dataset, tmp_path):
    site.plugin("writer", run_source=WRITE)

    class Inline:
        @hookimpl
        def mdivicom_capture_provenance(self, outcome):
            return {"seen": outcome.status}

    record = run_plugin(
        "writer",
        dataset=dataset,
        out=tmp_path / "out",
        hooks=load_hooks(extra=[("inline", Inline())]),
    )
    assert record.extensions == {"inline": {"seen": "succeeded"}}


def test_hooks_list_cli(site):
    hook_dist(site, "site-prov", PROVENANCE, dist="lab-hooks")
    hook_dist(
        site,
        "typo",
        """
from mdivicomtools import hookimpl
@hookimpl
def mdivicom_validate_rnu(request):
    return []
""",
    )
    result = site.cli("hooks", "list", "--json")
    assert result.returncode == 0, result.stderr
    items = {item["name"]: item for item in json.loads(result.stdout)}
    assert items["mdivicomtools.validation"]["builtin"] is True
    assert items["mdivicomtools.python"]["hooks"] == ["mdivicom_execution_backends"]
    assert items["site-prov"] == {
        "name": "site-prov",
        "status": "ok",
        "hooks": ["mdivicom_capture_provenance"],
        "error": None,
        "builtin": False,
        "origin": "entry point 'site-prov = h_site_prov'",
        "distribution": {"name": "lab-hooks", "version": "1.0.0"},
    }
    assert items["typo"]["status"] == "broken"
    table = site.cli("hooks", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "PROVIDED", "BY", "HOOKS", "/", "PROBLEM"]
    assert any(line.startswith("site-prov") and "lab-hooks 1.0.0" in line for line in table)
    assert any(
        line.startswith("typo") and "did you mean mdivicom_validate_run?" in line for line in table
    )


def test_site_provenance_example_package(tmp_path, dataset):
    """The extender's guide example, installed with real pip, adds to every record."""
    root = Path(__file__).parents[1] / "examples"
    target = tmp_path / "target"
    pip_install_target(target, root / "site-provenance", root / "minimal-plugin")
    env = {
        "PYTHONPATH": str(target),
        "PATH": "/usr/bin:/bin",
        "MDIVICOM_PLUGIN_PATH": "",
        "MDIVICOM_SITE_LAB": "interaction-lab",
        "SLURM_JOB_ID": "4242",
        "USER": "ada",
    }
    out = tmp_path / "out"
    result = subprocess.run(
        [MDIVICOM, "run", "hello", "--dataset", str(dataset), "--out", str(out), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["extensions"] == {
        "site-provenance": {
            "lab": "interaction-lab",
            "scheduler": "slurm",
            "job_id": "4242",
            "user": "ada",
            "run_status": "succeeded",
        }
    }
    env.pop("SLURM_JOB_ID")
    env["MDIVICOM_SITE_REQUIRE_JOB"] = "1"
    refused = subprocess.run(
        [MDIVICOM, "run", "hello", "--dataset", str(dataset), "--out", str(tmp_path / "out2")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "this site runs plugins only inside a scheduler job" in refused.stderr


def test_every_hookspec_has_an_example_and_a_test():
    """Meta-test: a hook without documentation or a test is not finished."""
    tests_text = (
        "".join(
            p.read_text()
            for p in Path(__file__).parent.glob("test_*.py")
            if p.name != "test_hooks.py"
        )
        + Path(__file__).read_text().split("def test_every_hookspec_has_an_example_and_a_test")[0]
    )
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    specs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert sorted(spec.name for spec in specs) == list(HOOK_NAMES)
    assert len(specs) == 4
    for spec in specs:
        doc = ast.get_docstring(spec) or ""
        assert "Example::" in doc and "@hookimpl" in doc, f"{spec.name} has no example"
        assert f"def {spec.name}(" in tests_text, f"{spec.name} has no test implementing it"


def _docstring_example(hook: str) -> str:
    """The example of `hook`'s docstring as a module: what a reader would paste."""
    import inspect
    import textwrap

    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    return "from mdivicomtools import hookimpl\n" + textwrap.dedent(doc.split("Example::", 1)[1])


def test_every_hookspec_example_works_as_written(site, dataset, tmp_path):
    """The examples in the hook reference are run as they are printed: the backends
    example once named a class it never defined, and failed with a NameError. The
    validation example asked for `--set participant_ids=...`, which a plugin with a
    strict config_schema (the repository's own hello example) refuses as an
    unknown key: its fix could not be followed. The plugin here has such a schema."""
    strict = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}},
        "additionalProperties": False,
    }
    site.plugin("writer", run_source=WRITE, config_schema=strict)
    for hook in HOOK_NAMES:
        hook_dist(site, f"ex-{hook.removeprefix('mdivicom_').replace('_', '-')}",
                  _docstring_example(hook))  # fmt: skip
    out = tmp_path / "out"
    common = ["run", "writer", "--dataset", str(dataset), "--out", str(out), "--backend", "inline"]
    refused = site.cli(*common)
    assert refused.returncode == 2, refused.stderr
    assert f"{dataset} has no consent.json; this site runs plugins only" in refused.stderr
    # what the validation example's message asks for, done
    (dataset / "consent.json").write_text("{}")
    ran = site.cli(*common, "--json")
    assert ran.returncode == 0, ran.stderr
    record = json.loads(ran.stdout)
    assert record["hook_errors"] == []
    assert record["backend"]["name"] == "inline"
    assert record["extensions"]["ex-capture-provenance"]["lab"] == "interaction-lab"
    assert (out / "writer" / "out.txt").read_text() == "x"
    # the finalisation example warns about a plugin that wrote nothing
    empty = tmp_path / "empty"
    site.plugin("silent", run_source="def run(*args, **kwargs):\n    return None\n")
    silent = site.cli(
        "run", "silent", "--dataset", str(dataset), "--out", str(empty), "--backend", "inline",
        "--json",
    )  # fmt: skip
    assert silent.returncode == 0, silent.stderr
    assert json.loads(silent.stdout)["warnings"] == ["the plugin wrote no files"]
