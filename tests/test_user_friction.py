"""One test per point a new user hit when trying 0.1 (CLI, config, docs, packaging)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engines import TEST_IMAGE, need_engine
from mdivicomtools import run_plugin
from mdivicomtools.model.contract import InvalidPlugin, parse_plugin
from mdivicomtools.resultbundle import FileTime, write_resultbundle
from mdivicomtools.settings import UserConfigError, configured_backend
from pluginsite import MDIVICOM, plugin_dict

ROOT = Path(__file__).parents[1]

FAILS = """
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    raise ValueError("the recordings have no audio")
"""


def _cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`mdivicom ARGS` in `cwd`, with `env` (default: this process's) plus `extra`."""
    return subprocess.run(
        [MDIVICOM, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**(env if env is not None else os.environ), **extra},
        timeout=120,
        check=False,
    )


# 1 ---------------------------------------------------------------------------------


@pytest.mark.engines
def test_1_the_printed_next_step_of_a_container_scaffold_works(tmp_path):
    need_engine("docker")
    made = _cli(
        "plugins", "new", "lister", "--kind", "container", "--image", TEST_IMAGE, cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    step = next(line for line in made.stdout.splitlines() if line.startswith("next: "))
    assert str(tmp_path / "lister") in step  # absolute: works from any folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        ["bash", "-c", step.removeprefix("next: ").replace("mdivicom ", f"{MDIVICOM} ")],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


def test_1_plugins_new_container_says_the_image_must_be_present(tmp_path):
    made = _cli("plugins", "new", "lister", "--kind", "container", cwd=tmp_path)
    assert made.returncode == 0
    assert (
        "note: the image docker.io/library/busybox:1.36 must be on your engine first" in made.stdout
    )
    assert "`docker pull docker.io/library/busybox:1.36` or `podman pull" in made.stdout


def test_1_plugins_new_container_names_the_sites_engine(tmp_path):
    made = _cli(
        "plugins", "new", "lister", "--kind", "container", cwd=tmp_path, MDIVICOM_BACKEND="podman"
    )
    assert made.returncode == 0, made.stderr
    assert "`podman pull docker.io/library/busybox:1.36`" in made.stdout
    assert "docker" not in made.stdout.replace("docker.io", "")


def test_1_plugins_check_takes_a_relative_dataset_and_plugin_path(site, tmp_path):
    site.plugin(
        "writer", run_source="def run(d, o, c, *, work_dir=None, dry_run=False):\n    pass\n"
    )
    (tmp_path / "study" / "ses-01").mkdir(parents=True)
    (tmp_path / "study" / "ses-01" / "a.txt").write_text("x")
    env = site.env()
    checked = _cli("plugins", "check", "writer", "--dataset", "study/ses-01", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "internal error" not in checked.stderr
    assert f"on {tmp_path / 'study' / 'ses-01'}" in checked.stdout
    manifests = Path(env["MDIVICOM_PLUGIN_PATH"])
    (manifests / "count.json").write_text(json.dumps(plugin_dict("count-lines", kind="container")))
    relative = os.path.relpath(manifests, tmp_path)
    listed = _cli(
        "plugins",
        "check",
        "count-lines",
        "--backend",
        "nope",
        cwd=tmp_path,
        env=env,
        MDIVICOM_PLUGIN_PATH=relative,
    )
    assert "no plugin named" not in listed.stdout + listed.stderr


# 2: the docs' commands are checked by tests/test_docs_commands.py; the README's refs:


def test_2_the_readme_names_the_sync_audio_plugin_by_its_real_ref():
    readme = (ROOT / "README.md").read_text()
    assert "lab/sync-audio" not in readme
    assert "mdivicom plugins info mdivicom/sync-audio" in readme


# 3 ---------------------------------------------------------------------------------


def test_3_a_misspelt_user_config_key_is_an_error_with_a_suggestion(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('backnd = "podman"\n')
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    with pytest.raises(UserConfigError, match=r"unknown key 'backnd' .*did you mean 'backend'\?"):
        configured_backend()


def test_3_a_config_file_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(UserConfigError, match=r"names .*nope.toml', which does not exist"):
        configured_backend()


def test_3_a_misspelt_container_field_gets_a_did_you_mean():
    plugin = plugin_dict("count-lines", kind="container")
    plugin["container"]["netwrok"] = False
    with pytest.raises(
        InvalidPlugin,
        match=r"container.netwrok is not a known field; did you mean container.network\?",
    ):
        parse_plugin(plugin)


# 4 ---------------------------------------------------------------------------------


def test_4_scheduler_without_the_dask_executor_is_a_usage_error(site, dataset, tmp_path):
    site.plugin(
        "writer", run_source="def run(d, o, c, *, work_dir=None, dry_run=False):\n    pass\n"
    )
    result = site.cli(
        "run",
        "writer",
        "--dataset",
        str(dataset),
        "--out",
        str(tmp_path / "o"),
        "--sessions",
        "ses-*",
        "--scheduler",
        "tcp://127.0.0.1:1",
    )
    assert result.returncode == 2
    assert "--scheduler names a Dask scheduler; add --executor dask" in result.stderr
    assert not (tmp_path / "o").exists()


# 5 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plugins list", "plugins list --json", "runs list"])
def test_5_a_closed_pipe_exits_141_for_every_command(site, dataset, tmp_path, command):
    # more than a pipe's 64 KiB buffer, so the writer always meets the closed pipe
    for index in range(1200):
        site.manifest(f"p{index}.json", plugin_dict(f"tool-{index:04d}", kind="container"))
    if command == "runs list":
        site.plugin(
            "writer", run_source="def run(d, o, c, *, work_dir=None, dry_run=False):\n    pass\n"
        )
        record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
        runs = tmp_path / "out" / "_runs"
        text = (runs / f"{record.run_id}.json").read_text()
        for index in range(1200):  # a long listing, so the reader goes away mid-write
            run_id = f"{record.run_id[:-4]}{index:04x}"
            (runs / f"{run_id}.json").write_text(text.replace(record.run_id, run_id))
        command += f" {tmp_path / 'out'}"
    script = f"{MDIVICOM} {command} | true; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=site.env(), timeout=120
    )
    assert result.stdout.strip() == "141", result.stderr
    assert result.stderr == ""


# 6 ---------------------------------------------------------------------------------


def test_6_runs_show_takes_a_prefix_and_bad_folders_are_errors(site, dataset, tmp_path):
    site.plugin(
        "writer", run_source="def run(d, o, c, *, work_dir=None, dry_run=False):\n    pass\n"
    )
    record = run_plugin("writer", dataset=dataset, out=tmp_path / "out")
    shown = site.cli("runs", "show", str(tmp_path / "out"), record.run_id[:12], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["run_id"] == record.run_id
    nowhere = site.cli("runs", "list", str(tmp_path / "nowhere"))
    assert nowhere.returncode == 2 and "is not a folder" in nowhere.stderr
    batch = tmp_path / "batch"
    (batch / "ses-01" / "_runs").mkdir(parents=True)
    hint = site.cli("runs", "show", str(batch), "latest")
    assert hint.returncode == 2
    assert "is a batch output: its run records are per session" in hint.stderr
    assert str(batch / "ses-01") in hint.stderr


def test_6_a_mistyped_out_is_named_not_a_folder_by_show_and_rerun(site, tmp_path):
    # `runs list` and `verify` said so; `runs show` and `rerun` said
    # "no run records in '.../resutls/_runs'", as if the folder were there
    for command in (("runs", "show"), ("rerun",)):
        result = site.cli(*command, str(tmp_path / "resutls"), "latest")
        assert result.returncode == 2
        assert result.stderr == (
            f"Error: {str(tmp_path / 'resutls')!r} is not a folder; give the --out of a run "
            "or a batch\n"
        )


def test_6_rerun_of_a_batch_output_names_rerun_on_a_session(site, tmp_path):
    # `mdivicom rerun BATCH_OUT latest` was told to try `mdivicom runs show
    # BATCH_OUT/ses-01 latest`, which shows a record and repeats nothing
    batch = tmp_path / "batch"
    (batch / "ses-01" / "_runs").mkdir(parents=True)
    hint = site.cli("rerun", str(batch), "latest")
    assert hint.returncode == 2
    assert f"`mdivicom rerun {batch / 'ses-01'} latest`" in hint.stderr
    assert "runs show" not in hint.stderr


# 7 ---------------------------------------------------------------------------------


def test_7_json_errors_are_json_on_stdout(site):
    result = site.cli("plugins", "info", "no-such-tool", "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "PluginNotFound" and error["exit_code"] == 2
    assert "no plugin named 'no-such-tool'" in error["message"]
    usage = site.cli("run", "x", "--json")  # click's own usage error
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["exit_code"] == 2


# 8 ---------------------------------------------------------------------------------


def test_8_rootless_podman_without_newuidmap_is_told_to_install_uidmap():
    from mdivicomtools_podman.engine import service_failure_fix

    tail = 'Error: cannot set up namespace using "/usr/bin/newuidmap": exec: "newuidmap": not found'
    fix = service_failure_fix(tail)
    assert fix is not None and "install the uidmap package" in fix
    assert service_failure_fix("some other failure") is None

    from mdivicomtools.execution.container.engine import EngineUnreachable
    from mdivicomtools.execution.container.runtime import ContainerBackend

    def connect():
        raise EngineUnreachable("the private service did not answer", fix=fix)

    status = ContainerBackend("podman", connect, fix="install podman").availability()
    assert status.fix == fix


# 9 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("isolate", [False, True])
def test_9_a_failing_plugins_traceback_goes_to_the_log_not_the_terminal(
    site, dataset, tmp_path, isolate
):
    site.plugin("fails", run_source=FAILS)
    args = ["run", "fails", "--dataset", str(dataset), "--out", str(tmp_path / "o")]
    if isolate:
        args.append("--isolate")
    quiet = site.cli(*args)
    assert quiet.returncode == 1
    assert "Traceback" not in quiet.stderr + quiet.stdout
    assert "ValueError: the recordings have no audio" in quiet.stdout
    log = next((tmp_path / "o" / "_runs").glob("*.log")).read_text()
    assert "Traceback" in log and "the recordings have no audio" in log
    verbose_args = ["-v", *args]
    verbose_args[verbose_args.index("--out") + 1] = str(tmp_path / "v")
    verbose = site.cli(*verbose_args)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


# 10 --------------------------------------------------------------------------------


def test_10_a_bundle_without_time_columns_claims_no_time_axis(tmp_path):
    (tmp_path / "summary.tsv").write_text("session\tcount\nses-01\t3\n")
    write_resultbundle(tmp_path, resultbundle_type="lab.summary.v1")
    bundle = json.loads((tmp_path / "resultbundle.json").read_text())
    assert bundle["time_reference"] == {"kind": "none", "unit": "none"}
    timed = tmp_path / "timed"
    timed.mkdir()
    (timed / "events.tsv").write_text("onset\tlabel\n0.5\tnod\n")
    write_resultbundle(
        timed,
        resultbundle_type="lab.events.v1",
        times={"events.tsv": FileTime(kind="point", key="onset")},
    )
    assert json.loads((timed / "resultbundle.json").read_text())["time_reference"] == {
        "kind": "session",
        "unit": "s",
    }


# 11 --------------------------------------------------------------------------------


def test_11_docs_match_the_code():
    help_text = _cli("run", "--help").stdout
    assert "Dask LocalCluster" in help_text  # --jobs sizes both executors, as docs/batch.md says
    extending = (ROOT / "docs" / "extending.md").read_text()
    for module in (
        "mdivicomtools.validation",
        "mdivicomtools.host",
        "mdivicomtools.inventory",
        "mdivicomtools.bundles",
        "mdivicomtools.python",
    ):
        assert module in extending
    assert (
        "`provenance.json` is the plugin's own account of its run"
        in (ROOT / "docs" / "plugin-authors.md").read_text()
    )
    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    assert "_MDIVICOM_COMPLETE=bash_source mdivicom" in cli_doc
    completion = subprocess.run(
        [MDIVICOM],
        env={**os.environ, "_MDIVICOM_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "_mdivicom_completion" in completion.stdout


# 12 --------------------------------------------------------------------------------


def test_12_the_listing_carries_the_declared_contract(site):
    site.plugin(
        "sync-audio", config_schema={"type": "object"}, inputs=["audio"], outputs={"sync": "tsv"}
    )
    site.manifest("count.json", plugin_dict("count-lines", kind="container"))
    items = {i["id"]: i for i in json.loads(site.cli("plugins", "list", "--json").stdout)}
    python = items["sync-audio"]
    assert python["api_version"] == "mdivicomtools.plugin.v0.1"
    assert python["meta"]["id"] == "sync-audio" and python["entry"]["callable"].endswith(":run")
    assert python["config_schema"] == {"type": "object"}
    assert python["inputs"] == ["audio"] and python["outputs"] == {"sync": "tsv"}
    assert python["container"] is None
    assert items["count-lines"]["container"]["image"] == TEST_IMAGE
    assert items["count-lines"]["entry"] is None


def test_12_list_filters(site):
    site.plugin("gaze", publisher="alab")
    site.manifest("count.json", plugin_dict("count-lines", kind="container", publisher="mlab"))
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "blab"}})

    def refs(*args: str) -> list[str]:
        return [i["ref"] for i in json.loads(site.cli("plugins", "list", "--json", *args).stdout)]

    assert refs("--kind", "container") == ["mlab/count-lines"]
    assert refs("--publisher", "alab") == ["alab/gaze"]
    assert refs("--broken") == ["blab/broken"]


# 13 and 15 -------------------------------------------------------------------------


def test_13_15_the_backends_install_after_the_core_in_tox():
    tox = (ROOT / "tox.ini").read_text()
    assert "-e{toxinidir}/backends" not in tox.split("commands_pre")[0]
    assert re.search(r"commands_pre =\s*\n\s*python -m pip install .*backends/docker", tox)


def test_13_documented_example_installs_bring_the_core_in_a_form_old_pip_resolves():
    """pip 23 (Python 3.11's) cannot match an editable core with extras (`-e '.[dev]'`)
    to an example's plain `mdivicomtools` requirement when the example is not
    editable too: it looks the core up on the index and fails. Checked by hand
    with pip 23.2.1 (`pip install --dry-run`); a resolution per test run would
    cost a minute of downloads, so the documented commands are checked here."""
    docs = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*/README.md")]
    installs = [
        line.strip()
        for path in docs
        for line in path.read_text().splitlines()
        if "pip install" in line and "./examples/" in line
    ]
    assert installs
    for line in installs:
        words = line.removeprefix("$ ").split("#")[0].split()
        assert "." in words or "-e ." in line, f"installs an example without the core: {line}"
        editable_extras = any(w.startswith(("'.[", '".[', ".[")) for w in words)
        plain_example = any(
            w.startswith("./examples/") and words[words.index(w) - 1] != "-e" for w in words
        )
        assert not (editable_extras and plain_example), f"old pip cannot resolve: {line}"


# 14 --------------------------------------------------------------------------------


def test_14_the_docs_home_page_says_what_it_is_for():
    home = (ROOT / "docs" / "index.md").read_text()
    first_screen = home[:1500]
    assert "One contract and one command" in first_screen
    assert "bash scripts/demo.sh" in home and "bash scripts/test.sh" in home
    assert all(step in home for step in ("discover", "validate", "run", "finalise", "record"))
    assert not re.search(r"\[[a-z-]+\.md\]", home), "link by title, not by file name"


def test_config_show_names_each_origin(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("strict_bundles = true\n")
    shown = _cli(
        "config", "show", "--json", "--backend", "podman", MDIVICOM_CONFIG_FILE=str(config)
    )
    settings = {s["name"]: s for s in json.loads(shown.stdout)}
    assert (
        settings["backend"]["origin"] == "command line" and settings["backend"]["value"] == "podman"
    )
    assert settings["strict_bundles"]["origin"] == "user config file"
    assert settings["strict_bundles"]["source"] == str(config)
    assert settings["config_file"]["origin"] == "environment"
    env = _cli(
        "config", "show", "--json", MDIVICOM_CONFIG_FILE=str(config), MDIVICOM_BACKEND="docker"
    )
    assert {s["name"]: s for s in json.loads(env.stdout)}["backend"]["origin"] == "environment"


def test_config_show_takes_every_run_option_it_shows(tmp_path):
    """Each setting a `run` option can set has the same option here (--strict-hooks
    was shown as a row but could not be given)."""
    (tmp_path / "empty.toml").write_text("")
    shown = _cli(
        *("config", "show", "--json", "--backend", "podman", "--strict-bundles"),
        *("--hash-dataset", "--strict-hooks", "--scheduler", "tcp://127.0.0.1:8786"),
        *("--memory", "8g", "--cpus", "2", "--shm-size", "1g", "--gpus", "all"),
        *("--mount", "models=/srv/models", "--stop-grace", "30"),
        *("--slurm-partition", "short", "--slurm-time", "0-02:00:00", "--slurm-mem", "4GB"),
        *("--slurm-cpus", "2", "--slurm-account", "lab", "--slurm-directive=--qos=low"),
        MDIVICOM_CONFIG_FILE=str(tmp_path / "empty.toml"),
    )
    assert shown.returncode == 0, shown.stderr
    flagged = {
        s["name"]: s["source"] for s in json.loads(shown.stdout) if s["origin"] == "command line"
    }
    assert flagged == {
        "backend": "--backend",
        "strict_bundles": "--strict-bundles",
        "hash_dataset": "--hash-dataset",
        "strict_hooks": "--strict-hooks",
        "dask_scheduler": "--scheduler",
        "container.memory": "--memory",
        "container.cpus": "--cpus",
        "container.shm_size": "--shm-size",
        "container.gpus": "--gpus",
        "container.mounts.models": "--mount",
        "container.stop_grace_s": "--stop-grace",
        "slurm.partition": "--slurm-partition",
        "slurm.time": "--slurm-time",
        "slurm.mem": "--slurm-mem",
        "slurm.cpus": "--slurm-cpus",
        "slurm.account": "--slurm-account",
        "slurm.directives": "--slurm-directive",
    }


#: runs `mdivicom ARGS...` in-process with every path under DENIED refused by stat(),
#: as a folder inside another user's 0700 home is (the tests may run as root, which
#: permissions do not stop)
DENY_AND_RUN = """
import os, pathlib, sys
denied, args = sys.argv[1], sys.argv[2:]
real_stat = os.stat
def stat(path, *a, **k):
    if os.fspath(path).startswith(denied):
        raise PermissionError(13, "Permission denied", os.fspath(path))
    return real_stat(path, *a, **k)
os.stat = stat
if hasattr(pathlib, "_NormalAccessor"):  # Python 3.10's pathlib holds os.stat of its own
    pathlib._NormalAccessor.stat = staticmethod(stat)
from mdivicomtools.cli import main
main(args)
"""


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "list"],
        ["verify"],
        ["batches", "list"],
        ["runs", "clean"],
        ["bundles", "validate"],
        ["dataset", "check"],
    ],
)
def test_a_folder_this_user_may_not_enter_is_named_not_an_internal_error(tmp_path, command):
    """`mdivicom runs list /home/colleague/results` was `internal error
    (PermissionError: ...)`, which reads as a bug of mdivicom."""
    folder = tmp_path / "colleague" / "results"
    folder.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-c", DENY_AND_RUN, str(tmp_path / "colleague"), *command, str(folder)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: cannot access {str(folder)!r}: Permission denied; check its permissions or "
        "ask its owner (run with -v for the traceback)\n"
    )


def test_the_python_example_of_running_md_runs_as_written(site, tmp_path, monkeypatch):
    # its second call, "the same, with the option fields as keywords", raised
    # ValidationFailed: the first had made results/hello/, and it had no overwrite;
    # then its first call did, after the page's `mdivicom run hello ... --out ./results`
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("## From Python")) + len("```python\n")
    code = text[start : text.index("```", start)]
    site.plugin(
        "hello",
        config_schema={"type": "object", "properties": {"pattern": {"type": "string"}}},
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'n.txt').write_text(config['pattern'])\n"
        ),
    )
    (tmp_path / "study" / "sessions" / "ses-01").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    run_plugin("hello", dataset="study", out="results", sets=["pattern=first"])  # the page's run
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        exec(compile(code, "running.md", "exec"), {})
    assert shown.getvalue().startswith("succeeded [OutputFile(path='n.txt'")
    assert (tmp_path / "results" / "hello" / "n.txt").read_text() == "*.wav"
