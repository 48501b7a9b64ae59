"""`mdivicom` started where operators start it: cron, systemd, CI jobs, service accounts.

Closed standard streams, no home folder, a removed working folder, paths at the
file system's limits: each ends in one `Error:` line and a documented exit code,
or in the command doing its work, never in `internal error`.
"""

from __future__ import annotations

import grp
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import mdivicomtools
from pluginsite import MDIVICOM, PluginSite, cli_without_dac, unreadable


def _closing(*fds: int):
    """A preexec_fn that starts the command with `fds` closed (`>&-`, `2>&-`)."""

    def close() -> None:
        for fd in fds:
            os.close(fd)

    return close


@pytest.mark.parametrize("closed", [(1,), (2,), (0, 1, 2)], ids=["stdout", "stderr", "all"])
def test_a_run_with_closed_standard_streams_succeeds_with_exit_0(site, dataset, tmp_path, closed):
    site.plugin("greet")
    out = tmp_path / "out"
    done = subprocess.run(
        [MDIVICOM, "run", "greet", "--dataset", str(dataset), "--out", str(out)],
        env=site.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        preexec_fn=_closing(*closed),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (record,) = (out / "_runs").glob("*.json")
    assert json.loads(record.read_text())["status"] == "succeeded"


def test_a_batch_with_stderr_closed_runs_its_sessions(site, tmp_path):
    site.plugin("greet")
    study = tmp_path / "study"
    for session in ("ses-01", "ses-02"):
        (study / "sessions" / session).mkdir(parents=True)
        (study / "sessions" / session / "a.txt").write_text(session)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            MDIVICOM,
            "run",
            "greet",
            "--dataset",
            str(study),
            "--out",
            str(out),
            "--sessions",
            "ses-*",
        ],
        env=site.env(),
        capture_output=True,
        text=True,
        preexec_fn=_closing(2),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert "2 succeeded" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["_batches", "ses-01", "ses-02"]


def test_a_listing_with_stdout_closed_exits_0(site: PluginSite):
    site.plugin("greet")
    done = subprocess.run(
        [MDIVICOM, "plugins", "list"],
        env=site.env(),
        capture_output=True,
        text=True,
        preexec_fn=_closing(1),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


#: `mdivicom ARGS` as a uid /etc/passwd does not know, with HOME unset (a systemd
#: DynamicUser, `docker run --user 12345`): no home folder can be found at all
NO_HOME = (
    "import os, pwd, sys\n"
    "for name in ('HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME', 'MDIVICOM_CONFIG_FILE',\n"
    "             'MDIVICOM_DIGEST_CACHE'):\n"
    "    os.environ.pop(name, None)\n"
    "def unknown(uid):\n"
    "    raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
    "pwd.getpwuid = unknown\n"
    "from mdivicomtools.cli import main\n"
    "main(sys.argv[1:])\n"
)


def _without_home(site: PluginSite, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_HOME, *args],
        env=site.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_without_a_home_folder_has_no_user_config_and_no_digest_cache(
    site, dataset, tmp_path
):
    site.plugin("greet")
    out = tmp_path / "out"
    done = _without_home(
        site, "run", "greet", "--dataset", str(dataset), "--out", str(out), "--hash-dataset"
    )
    assert done.returncode == 0, done.stderr
    (record,) = (out / "_runs").glob("*.json")
    assert json.loads(record.read_text())["dataset"]["digest"]


def test_config_show_without_a_home_folder_names_no_config_file(site):
    done = _without_home(site, "config", "show", "--json")
    assert done.returncode == 0, done.stderr
    settings = {s["name"]: s for s in json.loads(done.stdout)}
    assert settings["config_file"]["value"] is None
    assert settings["backend"] == {
        "name": "backend",
        "value": "auto",
        "origin": "default",
        "source": None,
    }


def test_a_tilde_in_the_plugin_path_without_a_home_folder_is_a_folder_not_found(site):
    site.plugin("greet")
    done = _without_home(
        site, "plugins", "list", MDIVICOM_PLUGIN_PATH=f"~/plugins{os.pathsep}{site.manifests}"
    )
    assert done.returncode == 0, done.stderr
    assert "lab/greet" in done.stdout
    assert "Warning: MDIVICOM_PLUGIN_PATH names '~/plugins', which is not a folder" in done.stderr


def test_only_common_home_expands_a_tilde_or_asks_platformdirs():
    """One place decides what a process without a home folder gets."""
    roots = [Path(mdivicomtools.__file__).parent]
    roots += [p for p in (Path(__file__).parents[1] / "backends").glob("*/src") if p.is_dir()]
    asking = re.compile(r"\.expanduser\(|platformdirs\.|import platformdirs")
    offenders = [
        str(path)
        for root in roots
        for path in root.rglob("*.py")
        if path.name != "home.py" and asking.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def _removing_the_working_folder() -> None:
    """A preexec_fn: the command starts in its `cwd`, which is then removed under it."""
    os.rmdir(os.getcwd())


def _in_a_removed_folder(
    args: list[str], gone: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mdivicom ARGS` started in `gone`, a folder removed as the command starts."""
    gone.mkdir()
    return subprocess.run(
        [MDIVICOM, *args],
        env=env,
        cwd=gone,
        preexec_fn=_removing_the_working_folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("run", "greet", "--dataset", "../dataset", "--out", "ABSOLUTE"),
        ("runs", "list", "results"),
        ("verify", "results", "latest"),
        ("dataset", "check", "../dataset"),
    ],
    ids=["run", "runs-list", "verify", "dataset-check"],
)
def test_a_relative_path_in_a_removed_working_folder_is_a_usage_error(
    site, dataset, tmp_path, command
):
    site.plugin("greet")
    args = [str(tmp_path / "out") if arg == "ABSOLUTE" else arg for arg in command]
    done = _in_a_removed_folder(args, tmp_path / "gone", site.env())
    assert done.returncode == 2, done.stderr
    assert "is relative, but the folder this command was started in has been removed" in (
        done.stderr
    )
    assert "internal error" not in done.stderr


def test_plugins_check_in_a_removed_working_folder_checks_the_plugin(site, tmp_path):
    site.plugin("greet")
    done = _in_a_removed_folder(["plugins", "check", "greet"], tmp_path / "gone", site.env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  run: status succeeded" in done.stdout


def _long_path(base: Path, length: int) -> Path:
    """A path below `base` of exactly `length` bytes, in names of at most 200 bytes."""
    text = str(base)
    while len(text) < length:
        text += "/" + "d" * min(200, length - len(text) - 1)
    assert len(os.fsencode(text)) == length
    return Path(text)


@pytest.mark.parametrize(
    "command",
    [
        ("runs", "list"),
        ("runs", "clean"),
        ("verify", "PATH", "latest"),
        ("dataset", "check"),
        ("bundles", "validate"),
        ("run", "greet", "--dataset", "PATH", "--out", "OUT"),
    ],
    ids=["runs-list", "runs-clean", "verify", "dataset-check", "bundles-validate", "run"],
)
def test_a_name_longer_than_name_max_is_a_usage_error(site, tmp_path, command):
    site.plugin("greet")
    long_name = str(tmp_path / ("x" * 256))
    args = [long_name if a == "PATH" else str(tmp_path / "o") if a == "OUT" else a for a in command]
    if "PATH" not in command:
        args.append(long_name)
    done = site.cli(*args)
    assert done.returncode == 2, done.stderr
    assert "is 256 bytes long, and this file system allows 255 (NAME_MAX)" in done.stderr
    assert "internal error" not in done.stderr


def test_a_path_longer_than_path_max_is_a_usage_error(site, dataset, tmp_path):
    site.plugin("greet")
    out = _long_path(tmp_path, 4200)
    done = site.cli("run", "greet", "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert "is 4200 bytes long, and a path may have at most 4095 here (PATH_MAX)" in done.stderr


def test_an_out_without_room_for_the_runs_own_files_is_refused_before_the_run(
    site, dataset, tmp_path
):
    """The longest path a run writes itself is `_staging/<run_id>/.previous-<id>`."""
    site.plugin("greet")
    out = _long_path(tmp_path, 4060)
    done = site.cli("run", "greet", "--dataset", str(dataset), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert "is too long for a run: it is 4060 bytes long (4111 with what" in done.stderr
    assert not (tmp_path / ("d" * 200)).exists()  # nothing was made on the way to it


@pytest.mark.parametrize(
    ("backend", "variable", "check"),
    [
        ("docker", "DOCKER_HOST", "docker version"),
        ("podman", "CONTAINER_HOST", "podman --remote version"),
    ],
)
def test_an_engine_socket_this_user_may_not_use_is_told_apart_from_a_stopped_engine(
    tmp_path, backend, variable, check
):
    """A service account outside the socket's group was told to start the engine."""
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        listening.listen()
        gid = 65534 if os.geteuid() == 0 else os.getegid()
        os.chown(path, -1, gid)
        os.chmod(path, 0o060)  # its group may connect, its owner (this user) may not
        group = grp.getgrgid(gid).gr_name
        env = {**os.environ, variable: f"unix://{path}"}
        done = cli_without_dac("backends", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (entry,) = [item for item in json.loads(done.stdout) if item["name"] == backend]
    assert entry["available"] is False
    assert entry["fix"] == (
        f"uid {os.getuid()} may not use the engine's socket unix://{path}: "
        f"run as root, or as a member of its group {group!r} (`sudo usermod -aG {group} "
        f"USER`, then log in again); `{check}` must answer for the user running mdivicom"
    )


def test_a_docker_host_that_is_no_address_says_so(monkeypatch):
    from mdivicomtools_docker.engine import DockerEngine

    from mdivicomtools.execution.container.engine import EngineUnreachable

    monkeypatch.setenv("DOCKER_HOST", "/var/run/docker.sock")
    with pytest.raises(EngineUnreachable) as raised:
        DockerEngine.connect()
    assert raised.value.fix is not None
    assert raised.value.fix.startswith("DOCKER_HOST=/var/run/docker.sock is not an address")


@pytest.mark.parametrize("command", ["list", "run"])
def test_a_stdout_that_cannot_be_written_is_named_not_an_internal_error(
    site, dataset, tmp_path, command
):
    """`> /dev/full`: a stdout on a full disk."""
    site.plugin("greet")
    out = tmp_path / "out"
    args = ["plugins", "list"] if command == "list" else ["run", "greet"]
    if command == "run":
        args += ["--dataset", str(dataset), "--out", str(out)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [MDIVICOM, *args],
            env=site.env(),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "Error: cannot write to stdout (No space left on device); what the command did is "
        "done (a run's record is written), only what it printed there is lost"
    )
    if command == "run":
        (record,) = (out / "_runs").glob("*.json")
        assert json.loads(record.read_text())["status"] == "succeeded"


def test_a_work_folder_that_cannot_be_written_is_refused_before_the_run(site, dataset, tmp_path):
    """It was a `failed` run (`OSError: the run could not continue: ...`), exit 1."""
    site.plugin("greet")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = tmp_path / "out"
    try:
        done = cli_without_dac(
            *("run", "greet", "--dataset", str(dataset), "--out", str(out)),
            *("--work", str(locked / "work")),
            env=site.env(),
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert (
        f"--work '{locked / 'work'}' cannot be written: this user may not write into "
        f"'{locked}'; choose a writable work folder" in done.stderr
    )
    assert not (out / "_runs").exists() or not list((out / "_runs").glob("*.json"))


#: run python code as root without the capabilities that bypass permission bits
WITHOUT_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search"]
WITHOUT_DAC += ["--bounding-set=-dac_override,-dac_read_search"]


def test_another_users_runtime_folder_is_a_podman_socket_not_there(tmp_path):
    """`sudo -u` leaves XDG_RUNTIME_DIR at the caller's /run/user/0: probing the rootless
    socket in it raised PermissionError, shown as the podman hook module failing."""
    closed = tmp_path / "runtime"
    (closed / "podman").mkdir(parents=True)
    closed.chmod(0)
    probe = (
        "import sys\n"
        "from mdivicomtools.execution.container.engine import refuses_this_user\n"
        "from mdivicomtools_podman.engine import _answers\n"
        "print(_answers(sys.argv[1]), refuses_this_user(sys.argv[1]))\n"
    )
    try:
        done = subprocess.run(
            [*WITHOUT_DAC, sys.executable, "-c", probe, f"unix://{closed}/podman/podman.sock"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        closed.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "True"]


@pytest.mark.parametrize(
    "log",
    [
        'level=error msg="XDG_RUNTIME_DIR directory \\"/run/user/0\\" is not owned by the '
        'current user"',
        'level=error msg="cannot determine user\'s homedir"',
        "cannot resolve /nonexistent: lstat /nonexistent: no such file or directory",
    ],
    ids=["runtime-dir", "no-home", "missing-home"],
)
def test_a_private_podman_service_without_folders_of_its_own_says_which(log):
    from mdivicomtools_podman.engine import service_failure_fix

    fix = service_failure_fix(log)
    assert fix is not None
    assert fix.startswith(
        "rootless Podman keeps its state in this user's own folders: run with HOME set to "
        "a folder this user owns and XDG_RUNTIME_DIR unset"
    )


def test_a_long_json_config_is_no_path_to_check(site, dataset, tmp_path):
    """`--config` takes a JSON object too: its length and a removed working folder are
    no reason to refuse it."""
    site.plugin("greet")
    config = json.dumps({f"item{i}": "v" * 20 for i in range(20)})  # over NAME_MAX
    out = tmp_path / "out"
    done = _in_a_removed_folder(
        [
            "run",
            "greet",
            "--dataset",
            str(dataset),
            "--out",
            str(out),
            "--config",
            config,
        ],
        tmp_path / "gone",
        site.env(),
    )
    assert done.returncode == 0, done.stderr
    (record,) = (out / "_runs").glob("*.json")
    assert json.loads(record.read_text())["config"]["item19"] == "v" * 20


@pytest.mark.parametrize("option", ["--out", "--work"])
def test_a_path_through_a_loop_of_symbolic_links_is_a_usage_error(site, dataset, tmp_path, option):
    """It was `validation hook 'mdivicomtools.validation' raised RuntimeError: Symlink loop`."""
    site.plugin("greet")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    paths = {"--out": str(tmp_path / "out"), "--work": str(tmp_path / "work")}
    paths[option] = str(tmp_path / "a" / "x")
    done = site.cli(
        *("run", "greet", "--dataset", str(dataset)),
        *("--out", paths["--out"], "--work", paths["--work"]),
    )
    assert done.returncode == 2, done.stderr
    assert (
        f"'{tmp_path / 'a' / 'x'}' cannot be used: it goes through a loop of symbolic links"
        in done.stderr
    )
    assert "raised" not in done.stderr


@pytest.mark.parametrize("option", ["--out", "--work"])
def test_an_out_or_work_this_user_may_not_reach_is_named(site, dataset, tmp_path, option):
    """`sudo -u svc mdivicom run ... --out results` from the caller's home: it was
    `validation hook 'mdivicomtools.validation' raised PermissionError`."""
    site.plugin("greet")
    closed = tmp_path / "closed"
    closed.mkdir()
    paths = {"--out": str(tmp_path / "out"), "--work": str(tmp_path / "work")}
    paths[option] = str(closed / "x")
    with unreadable(closed):
        done = cli_without_dac(
            *("run", "greet", "--dataset", str(dataset)),
            *("--out", paths["--out"], "--work", paths["--work"]),
            env=site.env(),
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("Permission denied") == 1, done.stderr
    assert (
        f"cannot use '{closed / 'x'}' (Permission denied): this user may not reach it"
        in done.stderr
    )
    assert "raised" not in done.stderr


def test_plugins_new_in_a_removed_working_folder_names_the_cause(tmp_path):
    """Its default --dir is ./NAME: `cannot write the plugin into 'lister' (No such file or
    directory: lister)` named no cause."""
    done = _in_a_removed_folder(["plugins", "new", "lister"], tmp_path / "gone")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "Error: the folder this command was started in has been removed; cd into an existing "
        "folder, or give --dir an absolute path"
    )
