"""What a site administrator sets up for many users: the user config file, the
MDIVICOM_* variables, shared plugin folders and hook modules, and how each
surfaces when it is wrong."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from engines import TEST_IMAGE, need_engine
from mdivicomtools.discovery import discover
from mdivicomtools.execution.base import Availability
from mdivicomtools.execution.registry import BackendRegistry
from mdivicomtools.settings import UserConfigError, load_user_config
from pluginsite import MDIVICOM, plugin_dict


class _Backend:
    def __init__(self, name: str, kind: str, available: bool = True) -> None:
        self.name = name
        self.kinds = frozenset({kind})
        self._available = available

    def availability(self) -> Availability:
        if self._available:
            return Availability(available=True, engine=self.name)
        return Availability(available=False, reason=f"{self.name} is down")

    def execute(self, request: object, outcome: object, log: object) -> None:
        raise AssertionError("never run here")


def _registry(podman_up: bool) -> BackendRegistry:
    return BackendRegistry(
        [
            ("python-module", _Backend("python", "python")),
            ("docker-module", _Backend("docker", "container")),
            ("podman-module", _Backend("podman", "container", available=podman_up)),
        ]
    )


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MDIVICOM, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    """Write the user config file (MDIVICOM_CONFIG_FILE) with the given text."""
    path = tmp_path / "config.toml"
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(path))
    monkeypatch.delenv("MDIVICOM_BACKEND", raising=False)

    def write(text: str):
        path.write_text(text, encoding="utf-8")
        return path

    return write


# the user config's `backend` ---------------------------------------------------------


def test_the_user_configs_backend_is_a_preference_that_says_when_passed_over(user_config):
    """`backend = "podman"` is what `auto` tries first; with Podman down a run goes
    to the next engine that answers, and says so (it was silent)."""
    path = user_config('backend = "podman"\n')
    registry = _registry(podman_up=False)
    assert registry.choose(None, "container").name == "docker"
    assert registry.notes == [
        f"backend = 'podman' in the user config {str(path)!r} is not available (podman is "
        "down); running on docker instead (set MDIVICOM_BACKEND=podman to refuse rather "
        "than fall back)"
    ]
    up = _registry(podman_up=True)
    assert up.choose(None, "container").name == "podman" and up.notes == []
    # python plugins run on python without a word; --backend wins over the file
    quiet = _registry(podman_up=False)
    assert quiet.choose(None, "python").name == "python" and quiet.notes == []
    assert quiet.choose("docker", "container").name == "docker" and quiet.notes == []


def test_a_user_config_backend_that_runs_python_plugins_is_said_not_to(user_config):
    """`backend = "srun-python"` (a site wrapper) in the user config: the file chooses
    among container backends, so python plugins still run on python; `config show`
    showed it and the runs said nothing."""
    path = user_config('backend = "srun-python"\n')
    registry = BackendRegistry(
        [
            ("python-module", _Backend("python", "python")),
            ("site-hpc", _Backend("srun-python", "python")),
            ("docker-module", _Backend("docker", "container")),
        ]
    )
    assert registry.choose(None, "python").name == "python"
    assert registry.notes == [
        f"backend = 'srun-python' in the user config {str(path)!r} chooses among container "
        "backends only; python plugins run on python (set MDIVICOM_BACKEND=srun-python to "
        "run them on srun-python)"
    ]
    # a container engine named there says nothing to python plugins
    user_config('backend = "docker"\n')
    quiet = _registry(podman_up=True)
    assert quiet.choose(None, "python").name == "python" and quiet.notes == []


def test_auto_says_when_it_passes_over_a_preferred_backend_in_conflict(user_config):
    """A site module that also named its backend `python` made the built-in one
    unusable, and every python plugin went, without a word, to whichever other
    python backend sorted first."""
    user_config("")
    registry = BackendRegistry(
        [
            ("mdivicomtools.python", _Backend("python", "python")),
            ("site-hpc", _Backend("python", "python")),
            ("site-wrap", _Backend("srun-python", "python")),
        ]
    )
    assert registry.choose(None, "python").name == "srun-python"
    assert registry.notes == [
        "backend 'python' is provided by several hook modules (mdivicomtools.python, "
        "site-hpc) and was passed over; running on srun-python instead; disable all but one "
        "with MDIVICOM_DISABLE_HOOKS=<module> (built-in modules cannot be disabled: rename "
        "the other module's backend)"
    ]


def test_a_misspelt_backend_in_the_user_config_is_named(user_config, monkeypatch):
    path = user_config('backend = "dockr"\n')
    registry = _registry(podman_up=True)
    assert registry.choose(None, "container").name == "docker"
    assert registry.notes == [
        f"backend = 'dockr' in the user config {str(path)!r} is not an installed backend "
        "(did you mean 'docker'?); running on docker instead (set MDIVICOM_BACKEND=dockr "
        "to refuse rather than fall back)"
    ]
    # MDIVICOM_BACKEND decides before the file is asked
    monkeypatch.setenv("MDIVICOM_BACKEND", "podman")
    strict = _registry(podman_up=True)
    assert strict.choose(None, "container").name == "podman" and strict.notes == []


def test_a_run_says_its_backend_preference_was_passed_over(user_config, tmp_path):
    """Through the CLI: the warning is on the terminal and in the record."""
    need_engine("docker")
    user_config('backend = "podmn"\n')
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "hello.json").write_text(
        json.dumps(
            {
                "meta": {
                    "api_version": "mdivicomtools.plugin.v0.1",
                    "id": "hello",
                    "kind": "container",
                    "version": "1.0.0",
                    "description": "does nothing",
                },
                "container": {"image": TEST_IMAGE, "command": ["true"], "pull": "never"},
            }
        )
    )
    (tmp_path / "data").mkdir()
    result = _cli(
        "run",
        "hello",
        "--dataset",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--json",
        MDIVICOM_PLUGIN_PATH=str(manifests),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["backend"]["name"] == "docker"
    [warning] = [w for w in record["warnings"] if "in the user config" in w]
    assert "backend = 'podmn'" in warning and "(did you mean 'podman'?)" in warning
    assert result.stderr.count(f"warning: {warning}") == 1  # before the run, not again


def test_images_commands_default_to_the_engine_a_run_would_use(tmp_path):
    """`images save` without --backend uses the engine `run` would: with
    MDIVICOM_BACKEND=podman and Podman down, it stops instead of saving from Docker."""
    need_engine("docker")
    tar = tmp_path / "tools.tar"
    result = _cli(
        "images",
        "save",
        TEST_IMAGE,
        "-o",
        str(tar),
        MDIVICOM_BACKEND="podman",
        CONTAINER_HOST=f"unix://{tmp_path}/no-podman.sock",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "backend 'podman' (from MDIVICOM_BACKEND) is not available" in result.stderr
    assert list(tmp_path.iterdir()) == []


# the user config file ---------------------------------------------------------------


def test_a_user_config_that_is_not_utf8_is_a_config_error(user_config):
    """It was `internal error (UnicodeDecodeError ...)`, exit 1, for every run."""
    path = user_config("")
    path.write_bytes(b'backend = "podman"\n# caf\xe9\n')
    with pytest.raises(UserConfigError) as raised:
        load_user_config()
    assert str(raised.value) == (
        f"the user config {str(path)!r} is not UTF-8 text (at byte offset 24); save it as UTF-8"
    )
    shown = _cli("config", "show", MDIVICOM_CONFIG_FILE=str(path))
    assert (shown.returncode, shown.stderr) == (2, f"Error: {raised.value}\n")


def test_a_byte_order_mark_is_no_error_in_the_user_config_or_a_manifest(user_config, site):
    """An editor's BOM made the file `not valid TOML: Invalid statement (at line 1,
    column 1)` and the manifest `broken`."""
    path = user_config("")
    path.write_bytes(b'\xef\xbb\xbfbackend = "podman"\n')
    assert load_user_config().backend == "podman"
    manifest = site.manifests / "tool.json"
    manifest.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(plugin_dict("tool", kind="container")).encode()
    )
    assert [(r.ref, r.status) for r in discover().plugins] == [("lab/tool", "ok")]


def test_a_user_config_from_a_pipe_holds_for_the_whole_run(monkeypatch):
    """`MDIVICOM_CONFIG_FILE=<(printf ...) mdivicom run ...`: a run asks for the
    config several times and a pipe reads empty the second time, so the run went
    to Docker without the [container] limits while `config show` showed both."""
    read_end, write_end = os.pipe()
    os.write(write_end, b'backend = "podman"\n[container]\nmemory = "1g"\n')
    os.close(write_end)
    try:
        monkeypatch.setenv("MDIVICOM_CONFIG_FILE", f"/dev/fd/{read_end}")
        first, second = load_user_config(), load_user_config()
    finally:
        os.close(read_end)
    assert first.backend == second.backend == "podman"
    assert second.container is not None and second.container.memory == "1g"


def test_a_top_level_key_after_a_section_says_where_it_belongs(user_config):
    """`strict_hooks = true` appended at the end of a file with a [container]
    section lands in [container]; the error says to move it, not just 'unknown'."""
    user_config('[container]\nmemory = "16g"\n\nstrict_hooks = true\n')
    with pytest.raises(UserConfigError) as raised:
        load_user_config()
    assert (
        "unknown key 'container.strict_hooks' in the user config" in str(raised.value)
        and "('strict_hooks' is a top-level key: move it above the first [section] line; "
        "every key after [container] belongs to [container])"
        in str(raised.value)
    )


def test_config_show_shows_the_container_and_slurm_sections(user_config):
    """A site's `[container]` and `[slurm]` settings were not shown at all, although
    a refused Slurm job points to `mdivicom config show` for them."""
    path = user_config(
        '[container]\nmemory = "16g"\ngpus = ["0", "1"]\n'
        '[container.mounts]\nmodels = "/srv/models"\n'
        '[slurm]\npartition = "short"\ndirectives = ["--qos=low"]\n'
    )
    shown = _cli(
        *("config", "show", "--json", "--memory", "8g", "--mount", "refs=/srv/refs"),
        "--slurm-directive=--exclusive",
        MDIVICOM_CONFIG_FILE=str(path),
    )
    assert shown.returncode == 0, shown.stderr
    rows = {s["name"]: (s["value"], s["origin"]) for s in json.loads(shown.stdout)}
    assert {name: row for name, row in rows.items() if "." in name} == {
        "container.memory": ("8g", "command line"),
        "container.cpus": (None, "default"),
        "container.shm_size": (None, "default"),
        "container.gpus": (["0", "1"], "user config file"),
        "container.stop_grace_s": (None, "default"),
        "container.mounts.models": ("/srv/models", "user config file"),
        "container.mounts.refs": ("/srv/refs", "command line"),
        "slurm.partition": ("short", "user config file"),
        "slurm.time": ("01:00:00", "default"),
        "slurm.mem": ("2GB", "default"),
        "slurm.cpus": (1, "default"),
        "slurm.account": (None, "default"),
        "slurm.directives": (["--qos=low", "--exclusive"], "command line"),
        "slurm.interface": (None, "default"),
    }
    table = _cli("config", "show", MDIVICOM_CONFIG_FILE=str(path)).stdout
    assert ["container.gpus", "0,", "1", "user", "config", "file", f"({path})"] in [
        line.split() for line in table.splitlines()
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('memory = "16g"\n', "unknown key 'memory' in the user config"),
        ('[container]\npartition = "gpu"\n', "unknown key 'container.partition' in the user"),
        ('[slurm]\nshm_size = "1g"\n', "unknown key 'slurm.shm_size' in the user config"),
    ],
)
def test_a_section_key_in_the_wrong_place_names_its_section(user_config, text, message):
    """Only `unknown key 'memory'` and the top-level keys: nothing said [container]."""
    user_config(text)
    with pytest.raises(UserConfigError) as raised:
        load_user_config()
    key = message.split("'")[1].rsplit(".", 1)[-1]
    home = "slurm" if key == "partition" else "container"
    assert message in str(raised.value)
    assert f"({key!r} belongs in the [{home}] section)" in str(raised.value)


# MDIVICOM_PLUGIN_PATH ---------------------------------------------------------------


def test_a_plugin_folder_named_twice_is_read_once(site, monkeypatch, tmp_path):
    """A profile script and a user's shell both add the lab's folder: its plugins
    stay usable (each was listed twice, broken as a duplicate of itself)."""
    site.manifest("tool.json", plugin_dict("tool", kind="container"))
    link = tmp_path / "link"
    link.symlink_to(site.manifests)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "same-tool.json").symlink_to(site.manifests / "tool.json")
    folders = [site.manifests, f"{site.manifests}/", link, other]
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", os.pathsep.join(map(str, folders)))
    found = discover()
    assert [(r.ref, r.status) for r in found.plugins] == [("lab/tool", "ok")]
    assert found.warnings == []


def test_a_plugin_folder_that_cannot_be_read_is_a_warning(site, monkeypatch, tmp_path):
    """Another user's private folder on the shared path: every command failed with
    `internal error (PermissionError ...)`. (Root reads any folder, so the refusal
    is the one the kernel gives other users.)"""
    site.manifest("tool.json", plugin_dict("tool", kind="container"))
    private = tmp_path / "private"
    private.mkdir()
    real_scandir = os.scandir

    def scandir(path):
        if str(path) == str(private):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", f"{private}{os.pathsep}{site.manifests}")
    found = discover()
    assert found.refs() == ["lab/tool"]
    assert found.warnings == [
        f"MDIVICOM_PLUGIN_PATH names '{private}', which cannot be read (Permission denied); "
        "its manifests are left out"
    ]


def test_a_manifest_link_whose_target_is_gone_is_listed_broken(site):
    (site.manifests / "tool.json").symlink_to("/nonexistent/tool.json")
    site.manifest("other.json", plugin_dict("other", kind="container"))
    found = discover()
    by_origin = {r.origin.rsplit("/", 1)[-1]: r for r in found.plugins}
    assert by_origin["other.json"].status == "ok"
    assert by_origin["tool.json"].status == "broken"
    assert by_origin["tool.json"].error == (
        "cannot read manifest: it links to '/nonexistent/tool.json', which does not exist"
    )


# engines ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["garbage", "ftp://podman.example.org"])
def test_a_container_host_podman_cannot_use_is_named_as_the_problem(monkeypatch, value):
    """It was `its availability() raised ValueError ...`, with the fix `fix or disable
    the hook module mdivicomtools-podman`: the wrong thing to change."""
    from mdivicomtools_podman.hooks import mdivicom_execution_backends

    monkeypatch.setenv("CONTAINER_HOST", value)
    [podman] = mdivicom_execution_backends()
    status = podman.availability()
    assert status.available is False
    assert status.reason is not None
    assert status.reason.startswith(
        f"CONTAINER_HOST={value} is not an address of a Podman service: The scheme"
    )
    assert status.fix is not None and "set CONTAINER_HOST to unix://" in status.fix
