"""The real `mdivicom` console script, run in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mdivicomtools import __version__
from pluginsite import MDIVICOM, plugin_dict

SUMMARY_FIELDS = {
    "ref",
    "id",
    "publisher",
    "kind",
    "version",
    "description",
    "status",
    "error",
    "source",
    "distribution",
}


def test_version():
    result = subprocess.run([MDIVICOM, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"mdivicom {__version__}"


def test_every_command_has_help():
    for args in (
        ["--help"],
        ["plugins", "--help"],
        ["plugins", "list", "--help"],
        ["plugins", "info", "--help"],
    ):
        result = subprocess.run([MDIVICOM, *args], capture_output=True, text=True, check=True)
        assert result.stdout.startswith("Usage: mdivicom"), args


def test_list_json_shape_and_order(site):
    site.plugin("sync-audio", dist="mditools-sync-audio", publisher="zlab")
    site.plugin("gaze", publisher="alab")
    site.manifest("count.json", plugin_dict("count-lines", kind="container", publisher="mlab"))
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "blab"}})
    result = site.cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    assert [i["ref"] for i in items] == [
        "alab/gaze",
        "blab/broken",
        "mlab/count-lines",
        "zlab/sync-audio",
    ]
    for item in items:
        assert SUMMARY_FIELDS <= set(item)
    sync = items[3]
    assert sync["distribution"] == {"name": "mditools-sync-audio", "version": "1.0.0"}
    assert (sync["status"], sync["error"], sync["source"], sync["kind"]) == (
        "ok",
        None,
        "entry_point",
        "python",
    )
    assert items[2]["source"] == "manifest" and items[2]["distribution"] is None
    assert items[1]["status"] == "broken" and "meta.api_version is missing" in items[1]["error"]


def test_list_table_shows_broken_reasons(site):
    site.plugin("sync-audio")
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "lab"}})
    result = site.cli("plugins", "list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["REF", "KIND", "VERSION", "STATUS", "DESCRIPTION", "/", "PROBLEM"]
    broken = next(line for line in lines if line.startswith("lab/broken"))
    assert "broken" in broken and "meta.api_version is missing" in broken
    ok = next(line for line in lines if line.startswith("lab/sync-audio"))
    assert "ok" in ok.split() and "The sync-audio plugin." in ok
    # columns are aligned: STATUS starts at the same offset on every line
    offsets = {
        line.index(word, len(line.split()[0]))
        for line, word in zip(lines, ["STATUS", "broken", "ok"], strict=False)
    }
    assert len(offsets) == 1


def test_info_json_has_meta_and_entry(site):
    site.plugin("sync-audio", config_schema={"type": "object"}, x_extra=1)
    result = site.cli("plugins", "info", "sync-audio", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert SUMMARY_FIELDS <= set(info)
    assert info["meta"]["config_schema"] == {"type": "object"}
    assert info["meta"]["x_extra"] == 1
    assert info["entry"]["callable"].endswith(".run:run")
    assert "container" not in info


def test_info_json_of_a_container_plugin(site):
    site.manifest("count.json", plugin_dict("count-lines", kind="container"))
    info = json.loads(site.cli("plugins", "info", "lab/count-lines", "--json").stdout)
    assert info["container"] == {
        "image": "localhost/mdivicom-test:1",
        "command": ["sh", "-c", "true"],
    }
    assert "entry" not in info


def test_info_human_output_and_deprecation_note(site):
    site.module("p_flatcli.__init__", "")
    site.module(
        "p_flatcli.plugin",
        """
        def get_plugin():
            return {"id": "flat", "kind": "python", "version": "0.9", "publisher": "old",
                    "description": "old style", "run_ref": "p_flatcli.run:run"}
        """,
    )
    site.distribution("flat-dist", {"flat": "p_flatcli.plugin:get_plugin"})
    result = site.cli("plugins", "info", "old/flat")
    assert result.returncode == 0, result.stderr
    assert "ref:" in result.stdout and "old/flat" in result.stdout
    assert "distribution:  flat-dist 1.0.0" in result.stdout
    assert "note:" in result.stdout and "deprecated flat plugin shape" in result.stdout


def test_info_of_a_broken_plugin_shows_the_reason(site):
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "lab"}})
    result = site.cli("plugins", "info", "broken")
    assert result.returncode == 0
    assert "broken: meta.api_version is missing" in result.stdout


def test_unknown_ref_is_one_line_exit_2_no_traceback(site):
    site.plugin("sync-audio")
    result = site.cli("plugins", "info", "sync-audoi")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: no plugin named 'sync-audoi' is installed; did you mean 'lab/sync-audio'?\n"
    )


def test_ambiguous_ref_exit_2(site):
    site.plugin("sync", dist="a-dist", publisher="lab-a")
    site.plugin("sync", dist="b-dist", publisher="lab-b")
    result = site.cli("plugins", "info", "sync", "--json")
    # with --json an error is also one JSON document on stdout (was: nothing)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["type"] == "AmbiguousReference"
    assert "name one of: lab-a/sync, lab-b/sync" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_ref_exit_2(site):
    result = site.cli("plugins", "info", "../etc")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: '../etc' is not a plugin reference")


def test_usage_error_exit_2():
    result = subprocess.run([MDIVICOM, "plugins", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_list_and_info_never_import_run_code(site, tmp_path):
    markers = [tmp_path / f"marker-{i}" for i in range(3)]
    packages = [site.plugin(f"heavy-{i}", marker=marker) for i, marker in enumerate(markers)]
    for args in (
        ["plugins", "list"],
        ["plugins", "list", "--json"],
        ["plugins", "info", "heavy-0"],
        ["plugins", "info", "lab/heavy-1", "--json"],
    ):
        result = site.cli(*args)
        assert result.returncode == 0, result.stderr
    assert [m.exists() for m in markers] == [False, False, False]
    # the marker mechanism itself works: importing the run module does leave it
    subprocess.run([sys.executable, "-c", f"import {packages[0]}.run"], env=site.env(), check=True)
    assert markers[0].exists()


def test_closed_pipe_gives_no_traceback(site):
    for index in range(400):
        site.manifest(
            f"tool-{index:03}.json",
            plugin_dict(f"tool-{index:03}", kind="container", description="x" * 200),
        )
    result = subprocess.run(
        f"'{MDIVICOM}' plugins list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=site.env(),
    )
    assert result.stdout.startswith("REF")
    assert result.stderr == ""


def test_plugin_path_warning_goes_to_stderr(site, tmp_path):
    site.manifest("count.json", plugin_dict("count-lines", kind="container"))
    result = site.cli(
        "plugins", "list", "--json", MDIVICOM_PLUGIN_PATH=f"{tmp_path / 'missing'}:{site.manifests}"
    )
    assert json.loads(result.stdout)[0]["ref"] == "lab/count-lines"
    assert "Warning: MDIVICOM_PLUGIN_PATH names" in result.stderr


def test_cli_startup_imports_only_what_the_command_needs():
    probe = (
        "import sys\n"
        "from mdivicomtools.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(','.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.strip().splitlines()[-1].split(","))
    ours = {m for m in loaded if m.startswith("mdivicomtools")}
    # common.signals (contextlib, signal, threading): every command treats SIGTERM as
    # Ctrl-C from its first line, so it is loaded at start-up by design
    light = {
        "mdivicomtools",
        "mdivicomtools._version",
        "mdivicomtools.errors",
        "mdivicomtools.common",
        "mdivicomtools.common.signals",
    }
    assert ours - light == {m for m in ours if m.startswith("mdivicomtools.cli")}
    heavy = {
        "msgspec",
        "pluggy",
        "jsonschema",
        "importlib.metadata",
        "mdivicomtools.discovery",
        "mdivicomtools.runner",
        "mdivicomtools.hooks",
        "pathlib",
        "json",
    }
    assert loaded & heavy == set()


def test_a_command_loads_its_own_command_module_and_no_other(site):
    """`plugins list --json` paid for importing all twelve command modules (run, runs,
    batches...) and their click decorators, and for modules only writes need; within
    its 1.5x-of-a-bare-script budget (benchmarks/discovery.py) that was the margin."""
    site.plugin("hello")
    probe = (
        "import sys\n"
        "from mdivicomtools.cli import main\n"
        "try:\n    main(['plugins', 'list', '--json'])\nexcept SystemExit:\n    pass\n"
        "print(','.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=site.env(), check=True
    )
    assert json.loads(result.stdout)[0]["id"] == "hello"
    loaded = set(result.stderr.strip().splitlines()[-1].split(","))
    commands = {m for m in loaded if m.startswith("mdivicomtools.cli.")}
    assert commands == {
        "mdivicomtools.cli.output",
        "mdivicomtools.cli.params",
        "mdivicomtools.cli.plugins",
        "mdivicomtools.cli.supervisor",
    }
    # `secrets` (hashlib and OpenSSL, 9 ms) came with the durable record writes'
    # random names; a list writes nothing
    assert loaded & {"hashlib", "secrets", "platformdirs"} == set()


def test_did_you_mean_costs_nothing_until_a_name_is_wrong(site, dataset, tmp_path):
    """difflib (1-2 ms of start-up) is imported for a "did you mean" only: it had crept
    back into four modules' imports, so `plugins list` and every run paid for it
    (docs/performance.md counts its lazy import among the cuts of run overhead)."""
    site.plugin("hello")
    run = ["run", "hello", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    probe = (
        "import sys\n"
        "from mdivicomtools.cli import main\n"
        f"for argv in (['plugins', 'list', '--json'], ['plugins', 'info', 'hello'], {run!r}):\n"
        "    try:\n        main(argv)\n    except SystemExit as exit:\n"
        "        assert not exit.code, (argv, exit.code)\n"
        "    print(argv[0], 'difflib' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=site.env(), check=True
    )
    said = [line for line in result.stderr.splitlines() if line.endswith(("True", "False"))]
    assert said == ["plugins False", "plugins False", "run False"]


def test_what_get_plugin_writes_past_sys_stdout_never_breaks_json(site, dataset, tmp_path):
    """A C extension's banner on import, a subprocess that computes a version: they
    write to descriptor 1, not sys.stdout, and came before the JSON document."""
    site.module(
        "p_native.__init__",
        "import os, subprocess, sys\n"
        "os.write(1, b'banner from import\\n')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"from a subprocess\")'])\n",
    )
    site.module(
        "p_native.plugin",
        f"""
        import os
        def get_plugin():
            os.write(1, b'written from get_plugin\\n')
            return {plugin_dict("native", run_module="p_native.run")!r}
        """,
    )
    site.module("p_native.run", "def run(*a, **k):\n    return {}\n")
    site.distribution("native-dist", {"native": "p_native.plugin:get_plugin"})
    for args in (
        ("plugins", "list", "--json"),
        ("plugins", "info", "native", "--json"),
        ("run", "native", "--dataset", str(dataset), "--out", str(tmp_path / "out"), "--json"),
    ):
        result = site.cli(*args)
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)
        for line in ("banner from import", "from a subprocess", "written from get_plugin"):
            assert line in result.stderr


@pytest.mark.parametrize("where", ["registration", "hook module"])
def test_code_that_changes_the_working_folder_while_it_loads_does_not_move_relative_paths(
    site, dataset, tmp_path, where
):
    """A registration module or a hook module that called os.chdir at import made
    `run x --dataset dataset --out out` look for /dataset (and write /out)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    chdir = f"import os\nos.chdir({str(elsewhere)!r})\n"
    if where == "registration":
        site.module("p_mover.__init__", chdir)
    else:
        site.module("p_mover.__init__", "")
        site.module("h_mover", chdir)
        site.distribution("mover-hooks", {"mover": "h_mover"}, group="mdivicomtools.hooks")
    site.module(
        "p_mover.plugin",
        f"def get_plugin():\n    return {plugin_dict('mover', run_module='p_mover.run')!r}\n",
    )
    site.module("p_mover.run", "def run(*a, **k):\n    return {}\n")
    site.distribution("mover-dist", {"mover": "p_mover.plugin:get_plugin"})
    result = subprocess.run(
        [MDIVICOM, "run", "mover", "--dataset", "dataset", "--out", "out", "--json"],
        capture_output=True,
        text=True,
        env=site.env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["dataset_dir"] == str(dataset)
    assert record["run_out_dir"] == str(tmp_path / "out")
    assert not (elsewhere / "out").exists()
