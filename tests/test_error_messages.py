"""The one-line errors a user reads: what is wrong, where, and how to fix it, in the
user's words (no Python reprs, no library jargon)."""

from __future__ import annotations

import json
import os
import subprocess

import docker.errors
import pytest
import requests.exceptions
import urllib3.exceptions

from mdivicomtools import resolve, run_plugin
from mdivicomtools.common.text import os_reason, schema_text
from mdivicomtools.errors import InvalidReference, PluginBroken
from mdivicomtools.execution.container.engine import engine_reason
from pluginsite import MDIVICOM


def _cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MDIVICOM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **extra},
        timeout=120,
        check=False,
    )


def _raised(make_inner, make_outer):
    """`make_outer()` raised while handling `make_inner()`, as the libraries chain them."""
    try:
        try:
            raise make_inner()
        except Exception as inner:
            raise make_outer(inner) from inner
    except Exception as outer:
        return outer


def test_an_engine_error_is_the_systems_or_the_engines_reason_not_a_repr():
    gone = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", FileNotFoundError(2, "No such file or directory")
        )
    )
    assert engine_reason(gone) == "No such file or directory"
    refused = _raised(
        lambda: ConnectionRefusedError(111, "Connection refused"),
        lambda inner: requests.exceptions.ConnectionError(
            "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"
        ),
    )
    assert engine_reason(refused) == "Connection refused"
    answered = docker.errors.APIError(
        "500 Server Error for http+docker://localhost/v1.41/images/create",
        explanation='Get "https://registry.example/v2/": no such host',
    )
    assert engine_reason(answered) == 'Get "https://registry.example/v2/": no such host'
    assert engine_reason(RuntimeError("plain words")) == "plain words"
    # a file the adapter wrote (`images save -o`): named, or the reason names nothing
    full = OSError(28, "No space left on device", "/data/.x.tar.1.partial")
    assert engine_reason(full) == "No space left on device: '/data/.x.tar.1.partial'"


def test_an_unreachable_docker_engine_is_named_with_the_reason(site, dataset, tmp_path):
    site.manifest(
        "count.json",
        {
            "meta": {
                "api_version": "mdivicomtools.plugin.v0.1",
                "id": "count",
                "kind": "container",
                "version": "1.0.0",
                "description": "d",
            },
            "container": {"image": "localhost/mdivicom-test:1", "command": ["true"]},
        },
    )
    args = ["run", "count", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    gone = site.cli(*args, "--backend", "docker", DOCKER_HOST="unix:///tmp/no-docker.sock")
    assert gone.returncode == 2
    line = gone.stderr.splitlines()[-1]
    assert line.startswith(
        "Error: backend 'docker' is not available: cannot reach Docker Engine at "
        "unix:///tmp/no-docker.sock: No such file or directory; start Docker Engine"
    ), line
    refused = site.cli(*args, "--backend", "docker", DOCKER_HOST="tcp://127.0.0.1:1")
    assert refused.returncode == 2
    line = refused.stderr.splitlines()[-1]
    assert "cannot reach Docker Engine at tcp://127.0.0.1:1: Connection refused; start" in line
    assert "HTTPConnectionPool" not in line, line


def test_a_broken_plugin_is_named_with_where_to_fix_it(site, dataset, tmp_path):
    manifest = site.manifest("typo.json", '{"meta": {"id": "typo",}}')
    refused = site.cli("run", "typo", "--dataset", str(dataset), "--out", str(tmp_path / "out"))
    assert refused.returncode == 2
    line = refused.stderr.splitlines()[-1]
    assert line.startswith("Error: plugin 'typo' is broken: invalid JSON at line 1"), line
    assert line.endswith(f"(from manifest {manifest})"), line
    site.plugin("crashes", data={"meta": "not an object"})
    with pytest.raises(PluginBroken) as raised:
        run_plugin("crashes", dataset=dataset, out=tmp_path / "out")
    assert raised.value.origin is not None and "entry point 'crashes = " in raised.value.origin
    assert str(raised.value).endswith(f"(from {raised.value.origin})")


def test_a_field_of_the_wrong_type_is_told_in_the_files_words():
    """msgspec says `Expected `bool | null`, got `str` - at `$.strict_bundles``."""
    assert schema_text("Expected `bool | null`, got `str` - at `$.strict_bundles`") == (
        "strict_bundles: expected true or false, got a string"
    )
    assert schema_text("Expected `int` >= 0 - at `$.a.b`") == "a.b: expected an integer >= 0"
    assert schema_text("Expected `object`, got `array`") == "expected an object, got an array"
    assert schema_text("Object missing required field `run_id`") == "run_id is missing (required)"
    assert schema_text("Object contains unknown field `x` - at `$.c`") == "c.x is not a known field"


def test_a_user_config_of_the_wrong_type_names_the_key_and_the_type(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('strict_bundles = "yes"\n')
    shown = _cli("config", "show", MDIVICOM_CONFIG_FILE=str(config))
    assert shown.returncode == 2
    assert shown.stderr.splitlines()[-1] == (
        f"Error: strict_bundles in the user config {str(config)!r}: expected true or false, "
        "got a string"
    )


def test_a_record_with_a_field_of_the_wrong_type_is_named_in_words(site, dataset, tmp_path):
    site.plugin("writer")
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    path = tmp_path / "out" / "_runs" / f"{record.run_id}.json"
    data = json.loads(path.read_text())
    data["status"] = 5
    path.write_text(json.dumps(data))
    shown = site.cli("runs", "show", str(tmp_path / "out"), "latest")
    assert shown.returncode == 2
    assert shown.stderr.splitlines()[-1] == (
        f"Error: the run record {str(path)!r} cannot be read: status: expected a string, "
        "got an integer"
    )


def test_a_misspelt_config_key_names_the_keys_the_plugin_takes(site, dataset, tmp_path):
    site.plugin(
        "syncer",
        config_schema={
            "type": "object",
            "properties": {
                "sync": {
                    "type": "object",
                    "properties": {"max_lag_s": {"type": "number"}},
                    "additionalProperties": False,
                },
                "label": {"type": "string"},
            },
            "additionalProperties": False,
        },
    )
    refused = site.cli(
        "run", "syncer", "--dataset", str(dataset), "--out", str(tmp_path / "out"),
        "--set", "sync.max_lag=5", "--set", "lable=x",
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-2:] == [
        "  - config: unknown key 'lable' (did you mean 'label'?); the plugin's keys here: "
        "label, sync",
        "  - config.sync: unknown key 'max_lag' (did you mean 'max_lag_s'?); the plugin's keys "
        "here: max_lag_s",
    ]


def test_options_out_of_place_are_named_as_given_with_their_verb(site, dataset, tmp_path):
    site.plugin("writer")
    args = ["run", "writer", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    several = site.cli(*args, "--resume", "--slurm-mem", "4GB", "--slurm-directive", "--qos=x")
    assert several.returncode == 2
    assert several.stderr.splitlines()[-1] == (
        "Error: --resume, --slurm-mem and --slurm-directive need --sessions GLOB (a batch, one "
        "run per session); add it, or leave them out for a single run"
    )
    one = site.cli(*args, "--memory", "2g")
    assert one.returncode == 2
    assert one.stderr.splitlines()[-1] == (
        "Error: --memory only applies to container plugins; lab/writer is a python plugin"
    )


def test_a_mistyped_out_is_not_a_folder_for_every_command_that_reads_runs(tmp_path):
    missing = tmp_path / "reslts"
    for command in (("runs", "show"), ("rerun",), ("verify",), ("runs", "list")):
        args = (str(missing),) if command == ("runs", "list") else (str(missing), "latest")
        result = _cli(*command, *args)
        assert result.returncode == 2, command
        line = result.stderr.splitlines()[-1]
        assert line.startswith(f"Error: {str(missing)!r} is not a folder; give the --out"), line


def test_a_bad_publisher_for_plugins_new_says_what_a_slug_may_hold(tmp_path):
    result = _cli("plugins", "new", "tool", "--publisher", "My Lab", "--dir", str(tmp_path / "t"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --publisher 'My Lab' is not a slug: use 1-64 lowercase letters, digits, '.', "
        "'_' or '-', starting with a letter or digit"
    )
    assert not (tmp_path / "t").exists()


def test_a_file_that_cannot_be_read_is_named_once_with_the_systems_reason(tmp_path):
    denied = PermissionError(13, "Permission denied", str(tmp_path / "x.json"))
    assert os_reason(denied, tmp_path / "x.json") == "Permission denied"
    assert os_reason(denied) == f"Permission denied: {str(tmp_path / 'x.json')!r}"
    assert os_reason(ValueError("not JSON")) == "not JSON"


def test_an_unreadable_record_says_why_without_pythons_errno(site, dataset, tmp_path):
    site.plugin("writer")
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    path = tmp_path / "out" / "_runs" / f"{record.run_id}.json"
    path.unlink()
    path.mkdir()  # what `open` cannot read, even for root
    shown = site.cli("runs", "show", str(tmp_path / "out"), "latest")
    assert shown.returncode == 2
    assert shown.stderr.splitlines()[-1] == (
        f"Error: the run record {str(path)!r} cannot be read: Is a directory"
    )
    listed = site.cli("runs", "list", str(tmp_path / "out"))
    assert f"Warning: {path}: not a readable run record (Is a directory)" in listed.stderr


def test_a_manifest_that_does_not_parse_is_told_without_pythons_exception_names(site):
    site.manifest("tool.toml", '[meta]\nid = "tool"\nthis is not toml\n')
    (site.manifests / "latin.json").write_bytes(b'{"meta": {"description": "caf\xe9"}}')
    listed = site.cli("plugins", "list", "--json")
    assert listed.returncode == 0
    errors = {p["ref"]: p["error"] for p in json.loads(listed.stdout)}
    assert (
        errors["tool"]
        == "invalid TOML: Expected '=' after a key in a key/value pair (at line 3, column 6)"
    )
    assert errors["latin"] == "not UTF-8 text (at byte offset 29); save it as UTF-8"


def test_a_capitalised_reference_or_backend_gets_the_name_that_was_meant(site, dataset, tmp_path):
    with pytest.raises(InvalidReference) as raised:
        resolve("Lab/Writer")
    assert str(raised.value).endswith("; did you mean 'lab/writer'?")
    with pytest.raises(InvalidReference) as raised:
        resolve("My Plug")  # no reference, whatever its case
    assert "did you mean" not in str(raised.value)
    site.plugin("writer")
    args = ["run", "writer", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    refused = site.cli(*args, "--backend", "Python")
    assert refused.returncode == 2
    line = refused.stderr.splitlines()[-1]
    assert line.startswith("Error: backend 'Python' is not installed; installed backends: "), line
    assert line.endswith("; did you mean 'python'?"), line


def test_a_number_option_says_what_it_counts_not_pythons_type(site, dataset, tmp_path):
    """click said `'5m' is not a valid float.` of `--timeout 5m`."""
    site.plugin("writer")
    args = ["run", "writer", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    for extra, message in (
        (
            ("--timeout", "5m"),
            "Error: Invalid value for '--timeout': '5m' is not a number of seconds; write "
            "seconds only, such as 300 for five minutes",
        ),
        (
            ("--sessions", "*", "--jobs", "2.5"),
            "Error: Invalid value for '--jobs': '2.5' is not a whole number; write digits "
            "only, such as 4",
        ),
        (
            ("--cpus", "two"),
            "Error: Invalid value for '--cpus': 'two' is not a number of CPUs; write a number "
            "such as 2 or 0.5",
        ),
    ):
        refused = site.cli(*args, *extra)
        assert refused.returncode == 2, extra
        assert refused.stderr.splitlines()[-1] == message
    assert not (tmp_path / "out").exists()


def test_a_mistyped_command_gets_the_command_that_was_meant():
    result = _cli("plugin", "list")
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[-1] == "Error: No such command 'plugin'. Did you mean 'plugins'?"
    )
    unknown = _cli("xyz")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines()[-1] == "Error: No such command 'xyz'."


def test_a_plugins_output_folder_given_for_its_run_root_names_the_run_root(site, dataset, tmp_path):
    site.plugin("writer")
    run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    output = tmp_path / "out" / "writer"
    for command in (("verify",), ("runs", "show"), ("rerun",)):
        result = site.cli(*command, str(output), "latest")
        assert result.returncode == 2, command
        assert result.stderr.splitlines()[-1] == (
            f"Error: no run records in {str(output / '_runs')!r}: {str(output)!r} is in the run "
            f"root {str(tmp_path / 'out')!r} (a plugin's output?); give "
            f"{str(tmp_path / 'out')!r}, the --out of its runs"
        ), command
