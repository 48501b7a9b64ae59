"""What a plugin author packaging a tool with the kit hit: the messages of a slip
in a manifest or registration, and what `plugins check` says about it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from engines import TEST_IMAGE, need_engine
from mdivicomtools import run_plugin
from mdivicomtools.authoring.check import check_plugin
from mdivicomtools.model.contract import InvalidPlugin, parse_plugin
from pluginsite import MDIVICOM, plugin_dict


def _container(**fields: object) -> dict:
    plugin = plugin_dict("wav-stats", kind="container")
    plugin["container"].update(fields)
    return plugin


def _without_api_version() -> dict:
    plugin = plugin_dict("audio-rms")
    plugin["meta"]["apiversion"] = plugin["meta"].pop("api_version")
    return plugin


@pytest.mark.parametrize(
    ("plugin", "said"),
    [
        # was `container.resources.memroy is not a known field`, where a misspelt
        # container field already got its "did you mean" and the known fields
        (
            lambda: _container(resources={"memroy": "256m"}),
            "container.resources.memroy is not a known field; did you mean "
            "container.resources.memory?; known fields of container.resources: "
            "memory, cpus, shm_size, pids, gpus",
        ),
        (
            lambda: _container(mounts={"models": {"targt": "/models"}}),
            "container.mounts[...].targt is not a known field; did you mean "
            "container.mounts[...].target?; known fields of container.mounts[...]: "
            "target, required, description",
        ),
        # was `container.pull: invalid enum value 'nevr'`: neither the choices nor the near one
        (
            lambda: _container(pull="nevr"),
            "container.pull: 'nevr' is not one of 'always', 'missing', 'never'; "
            "did you mean 'never'?",
        ),
        (
            lambda: plugin_dict("audio-rms", kind="pyhton"),
            "meta.kind: 'pyhton' is not one of 'container', 'python'; did you mean 'python'?",
        ),
        # gpus takes "all", a count or device ids: "is not one of 'all'" would mislead
        (
            lambda: _container(resources={"gpus": "al"}),
            "container.resources.gpus: invalid enum value 'al'",
        ),
        (
            _without_api_version,
            "meta.api_version is missing (required); meta has 'apiversion': "
            "did you mean 'api_version'?",
        ),
    ],
    ids=["resources-field", "mount-field", "pull", "kind", "gpus-word", "required-meta"],
)
def test_a_misspelling_in_a_plugin_names_what_was_meant(plugin, said):
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(plugin())
    assert str(caught.value) == said


def test_a_misspelt_optional_meta_field_gets_a_note():
    # `config_shema` was kept as free-form data without a word, so the plugin took
    # any config unchecked
    spec = parse_plugin(plugin_dict("audio-rms", config_shema={"type": "object"}, author="me"))
    assert spec.meta.config_schema is None
    assert spec.notes == [
        "meta.config_shema is no field of the contract, so it is kept as free-form data and "
        "means nothing to mdivicomtools; did you mean meta.config_schema?",
        "meta.author is no field of the contract, so it is kept as free-form data and "
        "means nothing to mdivicomtools; did you mean meta.authors?",
    ]


def test_free_form_meta_fields_far_from_the_contract_get_no_note():
    spec = parse_plugin(plugin_dict("audio-rms", maintainer="me", input_bundles=["x"]))
    assert spec.notes == []


def test_plugins_info_and_check_show_the_meta_note(site):
    site.plugin("rms-level", config_shema={"type": "object"})
    info = site.cli("plugins", "info", "rms-level")
    assert "did you mean meta.config_schema?" in info.stdout
    check = site.cli("plugins", "check", "rms-level", "--json")
    notes = [c for c in json.loads(check.stdout) if c["name"] == "note"]
    assert [n["status"] for n in notes] == ["warn"]
    assert "meta.config_shema is no field of the contract" in notes[0]["detail"]


def _checks(site, ref: str) -> dict[str, list[dict]]:
    result = site.cli("plugins", "check", ref, "--json")
    lines: dict[str, list[dict]] = {}
    for check in json.loads(result.stdout):
        lines.setdefault(check["name"], []).append(check)
    return lines


def _registration(site, plugin_id: str, source: str) -> None:
    """A plugin whose registration module is `source` plus a plain get_plugin()."""
    pkg = f"p_{plugin_id.replace('-', '_')}"
    data = plugin_dict(plugin_id, run_module=f"{pkg}.run")
    site.module(f"{pkg}.__init__", "")
    site.module(
        f"{pkg}.plugin",
        source + f"\n\ndef get_plugin():\n    return {data!r}\n",
    )
    site.module(
        f"{pkg}.run",
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n    return {}\n",
    )
    site.distribution(f"{plugin_id}-dist", {plugin_id: f"{pkg}.plugin:get_plugin"})


def test_check_warns_of_a_heavy_import_in_the_registration_module(site):
    # `import numpy, scipy` beside get_plugin() passed every check, while each
    # `mdivicom plugins list` and run waited 5 s for it (measured: 5.25 s cold)
    site.module("heavylab.__init__", "import heavylab.core\n")
    site.module("heavylab.core", "WEIGHTS = [0.0] * 1000\n")
    _registration(site, "rms-level", "import heavylab")
    (warning,) = _checks(site, "rms-level")["registration"]
    assert warning["status"] == "warn"
    assert warning["detail"].startswith("loading p_rms_level.plugin imported heavylab (")
    assert warning["detail"].endswith(
        "which every `mdivicom plugins list` and run waits for; import them in the module "
        "of entry.callable, which is loaded only when the plugin runs"
    )


def test_check_warns_of_a_registration_that_prints(site):
    # the docs say never print from get_plugin(); one that did passed every check
    _registration(
        site,
        "rms-level",
        "import os\nos.write(1, b'from C\\n')\nprint('loading rms-level')",
    )
    (warning,) = _checks(site, "rms-level")["registration"]
    assert warning == {
        "name": "registration",
        "status": "warn",
        "detail": "loading p_rms_level.plugin and calling get_plugin() printed "
        "'from C loading rms-level', which lands on the terminal of every `mdivicom` "
        "command that lists plugins; remove the print (report problems by raising, or "
        "in run())",
    }


def test_check_passes_a_light_silent_registration(site):
    site.plugin("rms-level")
    (line,) = _checks(site, "rms-level")["registration"]
    assert line["status"] == "pass"
    assert line["detail"].endswith(".plugin:get_plugin loads light and silent")


def test_check_warns_when_meta_version_is_not_the_package_version(site):
    # bumping pyproject.toml alone left meta.version behind without a word
    site.plugin("rms-level", dist="rms-level-dist")
    dist_info = next(site.root.glob("rms_level_dist-*.dist-info"))
    metadata = dist_info / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 1.0.0", "Version: 1.1.0"))
    (line,) = _checks(site, "rms-level")["version"]
    assert line == {
        "name": "version",
        "status": "warn",
        "detail": "meta.version 1.0.0 is not the version of its package rms-level-dist "
        "1.1.0, so result bundles and listings name 1.0.0 for the code of 1.1.0; read "
        "both from one place (a scaffold's __version__)",
    }


NUMPY_RESULT = """
import numpy as np


def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    return {"mean_db": np.float64(-32.5), "streams": 3}
"""


@pytest.mark.parametrize("isolate", [False, True])
def test_a_numpy_value_in_the_result_is_named_with_how_to_convert_it(
    site, dataset, tmp_path, isolate
):
    # was `... result.mean_db is a float64, not a JSON value`: the type, not the fix
    site.plugin("rms-level", run_source=NUMPY_RESULT)
    record = run_plugin("rms-level", dataset=dataset, out=tmp_path / "out", isolate=isolate)
    assert record.status == "succeeded" and record.result is None
    assert record.warnings == [
        "the plugin's return value was not kept: result.mean_db is a float64, not a JSON "
        "value; convert it before returning: float(x), int(x) or x.tolist() for numpy "
        "values, str(path), a list for a tuple or set"
    ]


def test_a_dependency_missing_from_the_package_is_named_with_the_fix(site, dataset, tmp_path):
    # was `... ModuleNotFoundError: No module named 'scipy'` in a fresh venv where the
    # plugin's wheel did not list scipy: neither where it is missing nor what to mend
    site.plugin("rms-level", run_source="import scipy_not_here_xyz\n")
    record = run_plugin("rms-level", dataset=dataset, out=tmp_path / "out")
    assert record.status == "failed" and record.error is not None
    assert record.error.message == (
        "cannot import 'p_rms_level_d.run' for entry.callable 'p_rms_level_d.run:run': "
        "ModuleNotFoundError: No module named 'scipy_not_here_xyz'; the plugin imports "
        f"'scipy_not_here_xyz', not installed in {sys.executable}: install it there; the "
        "plugin's package should list it in its dependencies"
    )


def test_a_misspelt_callable_module_is_named_with_the_fix(site):
    site.plugin("rms-level", data=plugin_dict("rms-level", run_module="p_rms_level_d.rnu"))
    (line,) = [c for c in check_plugin("rms-level") if c.name == "callable"]
    assert line.status == "fail"
    assert line.detail.endswith(
        "ModuleNotFoundError: No module named 'p_rms_level_d.rnu'; 'p_rms_level_d.rnu' is not "
        f"installed in {sys.executable}: install the plugin's package there, or mend "
        "entry.callable if it is misspelt"
    )


def test_a_wrong_signature_names_the_function_entry_callable_names(site):
    # was `run() must accept ...` for a function called compute
    site.plugin(
        "rms-level",
        data=plugin_dict("rms-level", run_module="p_rms_level_d.run")
        | {"entry": {"callable": "p_rms_level_d.run:compute"}},
        run_source="def compute(dataset_dir, out_dir):\n    return {}\n",
    )
    (line,) = [c for c in check_plugin("rms-level") if c.name == "callable"]
    assert line.detail == (
        "entry.callable 'p_rms_level_d.run:compute': compute() must accept (dataset_dir, "
        "out_dir, config) positionally; the contract's signature is run(dataset_dir, "
        "out_dir, config, *, work_dir=None, dry_run=False)"
    )


NEEDS_A_KEY = plugin_dict(
    "rms-level",
    run_module="p_rms_level_d.run",
    config_schema={
        "type": "object",
        "properties": {"sync_bundle": {"type": "string"}},
        "required": ["sync_bundle"],
    },
)


def test_a_plugin_with_a_required_key_is_checked_with_set(site):
    # `plugins check REF --set sync_bundle=...` was `No such option '--set'`, and the
    # failing line did not say how to give the check's runs a config
    site.plugin("rms-level", data=NEEDS_A_KEY)
    bare = site.cli("plugins", "check", "rms-level")
    assert bare.returncode == 1
    assert (
        "FAIL  validation: config: 'sync_bundle' is a required property; give the check's "
        "runs the config they need (plugins check --set KEY=VALUE or --config; config= of "
        "assert_plugin_conforms)\n"
    ) in bare.stdout
    given = site.cli("plugins", "check", "rms-level", "--set", "sync_bundle=/x/resultbundle.json")
    assert given.returncode == 0, given.stdout + given.stderr
    assert "PASS  run: status succeeded" in given.stdout


def test_a_write_outside_out_dir_is_named_with_where_to_write(site):
    # was `writes only to out_dir: wrote rel.txt`: what, but not where it belongs
    site.plugin(
        "rms-level",
        run_source="import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path('rel.txt').write_text('x')\n",
    )
    (line,) = [c for c in check_plugin("rms-level") if c.name == "writes only to out_dir"]
    assert (line.status, line.detail) == (
        "fail",
        "wrote rel.txt (write only under out_dir, which is kept, or work_dir, for scratch; "
        "a relative path lands in the folder the user started mdivicom in)",
    )


def test_a_renamed_manifest_plugin_is_suggested_by_its_file_name(site):
    # renaming meta.id to wav-level in wav-stats.json: `plugins check wav-stats` said
    # only `run 'mdivicom plugins list'` (the ids are too far apart for a close match)
    site.manifest("wav-stats.json", plugin_dict("wav-level", kind="container"))
    result = site.cli("plugins", "check", "wav-stats")
    assert result.returncode == 2
    assert result.stderr == (
        "Error: no plugin named 'wav-stats' is installed; did you mean 'lab/wav-level'?\n"
    )


def test_a_renamed_entry_point_plugin_is_suggested_by_its_entry_point_name(site):
    site.plugin("wav-level", ep_name="wav-stats")
    result = site.cli("plugins", "info", "wav-stats")
    assert result.stderr == (
        "Error: no plugin named 'wav-stats' is installed; did you mean 'lab/wav-level'?\n"
    )


def test_a_memory_limit_below_the_engines_minimum_is_refused_in_the_manifest():
    # `"memory": "4m"` was accepted, then failed each run: on Docker `Minimum memory
    # limit allowed is 6MB`, on Podman only `runc start ... failed: exit status 1`
    with pytest.raises(InvalidPlugin) as caught:
        parse_plugin(_container(resources={"memory": "4m"}))
    assert str(caught.value) == (
        "container.resources.memory '4m' is below 6 MiB, the least memory Docker and Podman "
        'start a container with; give at least "6m"'
    )


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_memory_floor_is_what_the_engines_start_with(site, dataset, tmp_path, engine):
    need_engine(engine)
    site.manifest("wav-stats.json", _container())
    low = site.cli(
        *("run", "wav-stats", "--backend", engine, "--memory", "5m"),
        *("--dataset", str(dataset), "--out", str(tmp_path / "low")),
    )
    assert low.returncode == 2
    assert low.stderr.endswith(
        "Error: --memory '5m' is below 6 MiB, the least memory Docker and Podman start a "
        'container with; give at least "6m"\n'
    )
    assert not (tmp_path / "low").exists()
    floor = site.cli(
        *("run", "wav-stats", "--backend", engine, "--memory", "6m"),
        *("--dataset", str(dataset), "--out", str(tmp_path / "floor")),
    )
    assert floor.returncode == 0, floor.stderr


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_a_failed_container_check_quotes_what_the_tool_said_last(
    site, engine, tmp_path, monkeypatch
):
    # was `ContainerFailed: the container exited with status 1; its log ...`: the why
    # (a write to the read-only dataset) was only in a temporary file
    need_engine(engine)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the kept log goes here
    site.manifest(
        "wav-stats.json",
        _container(command=["sh", "-c", "echo hi > /mdivicom/dataset/x.txt"]),
    )
    checks = {c.name: c for c in check_plugin("wav-stats", backend=engine)}
    run = checks["run"]
    assert run.status == "fail"
    assert (
        "ContainerFailed: the container exited with status 1; it last printed \"sh: can't "
        'create /mdivicom/dataset/x.txt: Read-only file system"; its log (output and '
        "traceback): "
    ) in run.detail


def test_a_missing_heavy_import_in_the_registration_is_named_as_such(site):
    # `import torch` beside get_plugin() failed `meta: import failed: ModuleNotFoundError:
    # No module named 'torch'`, not saying it was the module every listing loads
    _registration(site, "rms-level", "import torch_not_here_xyz")
    (line,) = _checks(site, "rms-level")["meta"]
    assert line == {
        "name": "meta",
        "status": "fail",
        "detail": "import failed: ModuleNotFoundError: No module named 'torch_not_here_xyz' "
        "(importing p_rms_level.plugin, the registration module, which every listing "
        "loads: import what run() needs in the module of entry.callable, and install it)",
    }


def test_a_missing_registration_module_gets_no_advice_about_imports(site):
    site.distribution("gone-dist", {"rms-level": "p_gone.plugin:get_plugin"})
    (line,) = _checks(site, "rms-level")["meta"]
    assert line["detail"] == "import failed: ModuleNotFoundError: No module named 'p_gone'"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_scaffolding_on_an_image_the_engine_has_gives_no_note_to_get_it(tmp_path, engine):
    # `plugins new x --kind container --image localhost/mdivicom-test:1` said the image
    # "must be on your engine first", with pull and load commands, when it was there
    need_engine(engine)
    env = {**os.environ, "MDIVICOM_BACKEND": engine}
    have = subprocess.run(
        [MDIVICOM, "plugins", "new", "lister", "--kind", "container", "--image", TEST_IMAGE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert have.returncode == 0, have.stderr
    assert have.stdout == (
        f"created {tmp_path / 'lister'}/\n"
        f"next: export MDIVICOM_PLUGIN_PATH={tmp_path / 'lister'} && mdivicom plugins "
        "check lister\n"
    )
    lack = subprocess.run(
        [
            MDIVICOM,
            "plugins",
            "new",
            "other",
            "--kind",
            "container",
            "--image",
            "localhost/not-here:1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert "note: the image localhost/not-here:1 must be on your engine first" in lack.stdout


def test_a_write_into_the_staging_root_fails_the_check(site):
    # `Path(out_dir).parent.parent / "cache.npy"` lands in <out>/_staging/, which no run
    # removes (a real run left `_staging/cache.npy` behind); the check passed it,
    # leaving the whole folder out of its snapshots
    site.plugin(
        "rms-level",
        run_source="import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path(out_dir).parent.parent.joinpath('cache.npy').write_text('x')\n",
    )
    (line,) = [c for c in check_plugin("rms-level") if c.name == "writes only to out_dir"]
    assert line.status == "fail"
    assert line.detail.startswith("wrote _staging/cache.npy (write only under out_dir")
