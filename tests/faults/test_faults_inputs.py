"""Faults around a run's inputs and setup: the dataset, hooks, config, ids, the disk.

Each test: the exit code, the record (or, for bad input, that nothing was
recorded), the earlier output intact and no staging left.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from faultkit import (
    assert_contained,
    assert_earlier_intact,
    assert_no_staging,
    faulty_run,
    good_earlier_run,
    hostile_plugin,
    last_record,
    records,
    run_cli,
    small_file_system,
)

from pluginsite import MDIVICOM, cli_without_dac, pip_install_target, plugin_dict, unreadable


def test_an_in_place_rewrite_with_the_mtime_restored_is_caught(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "rewrites_dataset_in_place", dataset, out)
    assert_contained(out, plugin, done, 1, "failed", "DatasetModified", "changed a.txt")


def test_an_unreadable_dataset_folder_is_bad_input_not_a_failed_plugin(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "deep_return")
    good_earlier_run(hsite, plugin, dataset, out)
    locked = dataset / "locked"
    locked.mkdir()
    with unreadable(locked):
        done = cli_without_dac(
            *("run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"),
            env=hsite.env(),
        )
    assert done.returncode == 2, done.stderr
    assert "the dataset cannot be read: Permission denied" in done.stderr
    assert str(locked) in done.stderr
    assert len(records(out)) == 1  # only the good earlier run: nothing ran
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_an_unreadable_file_with_hash_dataset_is_bad_input_not_a_failed_run(
    hsite, dataset, tmp_path
):
    """--hash-dataset reads every file: one that could not be opened failed the run
    (DatasetUnreadable, exit 1, a record) though nothing had run; it is refused now."""
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "deep_return")
    good_earlier_run(hsite, plugin, dataset, out)
    locked = dataset / "locked.bin"
    locked.write_bytes(b"x")
    with unreadable(locked, restore=0o644):
        done = cli_without_dac(
            *("run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"),
            "--hash-dataset",
            env=hsite.env(MDIVICOM_DIGEST_CACHE="off"),
        )
    assert done.returncode == 2, done.stderr
    assert (
        "the dataset cannot be read for --hash-dataset: 'locked.bin' (Permission denied)"
        in done.stderr
    )
    assert len(records(out)) == 1  # only the good earlier run: nothing ran
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


BROKEN_HOOKS = """
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_finalise_outputs(request, outcome):  # misspelt: finalize
    pass
"""


def test_a_broken_hook_module_is_warned_about_recorded_and_strict_refuses(hsite, dataset, tmp_path):
    hsite.module("site_hooks", BROKEN_HOOKS)
    hsite.distribution("site-hooks", {"site": "site_hooks"}, group="mdivicomtools.hooks")
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "deep_return")
    good_earlier_run(hsite, plugin, dataset, out)
    assert "hook module 'site' is broken and left out" in records_stderr(hsite, dataset, out)

    strict = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"),
        "--strict-hooks",
    )
    assert strict.returncode == 2, strict.stderr
    assert "broken hook module(s) with --strict-hooks: site:" in strict.stderr
    config = tmp_path / "user.toml"
    config.write_text("strict_hooks = true\n")
    from_config = subprocess.run(
        [MDIVICOM, "run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"],
        capture_output=True,
        text=True,
        env=hsite.env(MDIVICOM_CONFIG_FILE=str(config)),
        timeout=90,
        check=False,
    )
    assert from_config.returncode == 2, from_config.stderr
    # the message names where strictness came from (it said --strict-hooks here too)
    assert "broken hook module(s) with strict_hooks = true: site:" in from_config.stderr
    # the good run was recorded with the hook error; the refused ones left nothing
    (record,) = records(out)
    assert [e["plugin"] for e in record["hook_errors"]] == ["site"]
    assert record["hook_errors"][0]["hook"] == "(load)"
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def records_stderr(site, dataset, out) -> str:
    """The stderr of the good run `good_earlier_run` made, run again into a fresh folder."""
    done = run_cli(
        site,
        *("run", "deep-return", "--dataset", str(dataset), "--out", str(out) + "-again"),
        *("--set", "good=true"),
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_config_schema_errors_never_show_a_secret(hsite, dataset, tmp_path):
    data = plugin_dict(
        "guarded",
        config_schema={
            "type": "object",
            "properties": {"password": {"type": "string"}, "api": {"type": "object"}},
            "additionalProperties": False,
        },
    )
    data["entry"] = {"callable": "hostile:deep_return"}
    hsite.plugin("guarded", data=data)
    out = tmp_path / "out"
    done = run_cli(
        hsite,
        *("run", "guarded", "--dataset", str(dataset), "--out", str(out)),
        *("--set", "password=123456789", "--set", 'api={"token": "tok-98765"}'),
        *("--set", "extra=1"),
    )
    assert done.returncode == 2, done.stderr
    assert "config.password: ***REDACTED*** is not of type 'string'" in done.stderr
    assert "123456789" not in done.stderr + done.stdout
    assert not (out / "_runs").exists() or not records(out)


def test_a_plugin_id_with_a_trailing_newline_is_refused(hsite, dataset, tmp_path):
    hsite.manifest(
        "nl.json",
        json.dumps(
            {
                "meta": {
                    "api_version": "mdivicomtools.plugin.v0.1",
                    "id": "nl\n",
                    "kind": "container",
                    "version": "1.0.0",
                    "publisher": "lab",
                    "description": "An id with a newline.",
                },
                "container": {"image": "localhost/mdivicom-test:1", "command": ["true"]},
            }
        ),
    )
    out = tmp_path / "out"
    done = run_cli(hsite, "run", "nl\n", "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert not out.exists() or not any(p.name.startswith("nl") for p in out.iterdir())


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_a_full_disk_frees_staging_and_still_records_the_run(hsite, dataset, tmp_path, isolate):
    with small_file_system(tmp_path / "small") as out:
        plugin = hostile_plugin(hsite, "fills_disk")
        good_earlier_run(hsite, plugin, dataset, out)
        extra = ["--isolate"] if isolate else []
        done = run_cli(
            hsite,
            *("run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"),
            *extra,
        )
        assert done.returncode == 1, done.stderr
        record = last_record(out)
        assert record["status"] == "failed", done.stderr + done.stdout
        assert record["error"]["type"] == "OSError"
        assert "No space left on device" in record["error"]["message"]
        assert_earlier_intact(out, plugin)
        assert_no_staging(out)
        # the space is free again
        assert os.statvfs(out).f_bfree * os.statvfs(out).f_bsize > 2 * 1024 * 1024


def test_plugins_check_sees_a_write_to_an_absolute_path_outside_out_dir(hsite, tmp_path):
    hostile_plugin(hsite, "writes_outside")
    target = tmp_path / "elsewhere" / "escaped.txt"
    target.parent.mkdir()
    done = run_cli(
        hsite,
        *("plugins", "check", "writes-outside", "--json"),
        *("--config", json.dumps({"target": str(target)})),
    )
    assert done.returncode == 1, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert checks["writes only to out_dir"]["status"] == "fail"
    assert str(target) in checks["writes only to out_dir"]["detail"]


def test_the_plugins_new_template_keeps_config_values_out_of_its_provenance(
    hsite, dataset, tmp_path
):
    made = run_cli(hsite, "plugins", "new", "templ", "--dir", str(tmp_path / "templ"))
    assert made.returncode == 0, made.stderr
    pip_install_target(hsite.root, tmp_path / "templ")
    out = tmp_path / "out"
    done = run_cli(
        hsite,
        *("run", "templ", "--dataset", str(dataset), "--out", str(out)),
        *("--set", "pattern=*-123456789"),  # the template's one config key stands in for a secret
    )
    assert done.returncode == 0, done.stderr
    provenance = (out / "templ" / "provenance.json").read_text()
    assert "123456789" not in provenance
    assert json.loads(provenance)["config_keys"] == ["pattern"]
