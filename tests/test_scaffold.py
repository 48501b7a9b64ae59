"""`mdivicom plugins new`: the scaffolded package conforms and passes its own tests."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engines import need_engine
from mdivicomtools.authoring.sampledata import make_sample_dataset
from mdivicomtools.authoring.scaffold import scaffold
from mdivicomtools.errors import UsageError
from pluginsite import MDIVICOM, pip_install_target


def test_python_scaffold_installs_conforms_and_passes_its_tests(tmp_path):
    made = subprocess.run(
        [
            MDIVICOM,
            "plugins",
            "new",
            "gaze-count",
            "--dir",
            str(tmp_path / "gaze-count"),
            "--publisher",
            "mylab",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"created {tmp_path / 'gaze-count'}/")
    target = tmp_path / "site"
    pip_install_target(target, tmp_path / "gaze-count")
    env = dict(os.environ, PYTHONPATH=str(target), MDIVICOM_PLUGIN_PATH="")
    check = subprocess.run(
        [MDIVICOM, "plugins", "check", "mylab/gaze-count", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert {c["status"] for c in json.loads(check.stdout)} == {"pass"}
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "gaze-count" / "tests"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path / "gaze-count",
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "2 passed" in tests.stdout


def _new_container_plugin(folder):
    """`mdivicom plugins new lister --kind container` into `folder`, on the test image."""
    made = subprocess.run(
        [
            *(MDIVICOM, "plugins", "new", "lister", "--kind", "container"),
            *("--dir", str(folder), "--image", "localhost/mdivicom-test:1"),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr


def test_container_scaffold_is_a_valid_manifest(tmp_path):
    _new_container_plugin(tmp_path / "lister")
    env = dict(os.environ, MDIVICOM_PLUGIN_PATH=str(tmp_path / "lister"))
    info = subprocess.run(
        [MDIVICOM, "plugins", "info", "lister", "--json"], env=env, capture_output=True, text=True
    )
    assert info.returncode == 0 and json.loads(info.stdout)["status"] == "ok"
    assert json.loads(info.stdout)["container"]["image"] == "localhost/mdivicom-test:1"


def test_bad_names_and_existing_folders_are_exit_2(tmp_path):
    bad = subprocess.run(
        [MDIVICOM, "plugins", "new", "Bad Name", "--dir", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "is not a plugin id" in bad.stderr
    (tmp_path / "taken").mkdir()
    taken = subprocess.run(
        [MDIVICOM, "plugins", "new", "taken", "--dir", str(tmp_path / "taken")],
        capture_output=True,
        text=True,
    )
    assert taken.returncode == 2 and "already exists" in taken.stderr


def test_an_image_the_engines_cannot_parse_is_exit_2_and_writes_nothing(tmp_path):
    """`--image` went into the manifest unchecked, so the fresh scaffold was listed as
    `broken` (and its own test failed) while a bad name or publisher is refused."""
    for image, reason in (
        ("localhost/my tool:1", "it holds whitespace"),
        ("localhost/MyTool:1", "a repository name must be lowercase"),
        ("", "container.image is empty"),
    ):
        folder = tmp_path / "tool"
        made = subprocess.run(
            [MDIVICOM, "plugins", "new", "tool", "--kind", "container", "--dir", str(folder),
             "--image", image],
            capture_output=True, text=True,
        )  # fmt: skip
        assert made.returncode == 2, made.stdout + made.stderr
        assert made.stderr.startswith(f"Error: --image {image!r}: ") and reason in made.stderr
        assert not folder.exists()


def test_ids_that_are_no_project_name_as_such_still_build(tmp_path):
    # a slug may end in '-' or hold a '.', which a project name (PEP 508) and a bare
    # TOML key do not allow: the scaffold used to write a pyproject.toml pip refused
    made = subprocess.run(
        [MDIVICOM, "plugins", "new", "talk.time-", "--dir", str(tmp_path / "tt")],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    target = tmp_path / "site"
    pip_install_target(target, tmp_path / "tt")
    assert (target / "mdivicom_talk_time-0.1.0.dist-info").is_dir()
    env = dict(os.environ, PYTHONPATH=str(target), MDIVICOM_PLUGIN_PATH="")
    info = subprocess.run(
        [MDIVICOM, "plugins", "info", "local/talk.time-", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["status"] == "ok"


def test_container_scaffold_passes_its_tests_with_another_plugin_path_set(tmp_path):
    need_engine("docker")
    _new_container_plugin(tmp_path / "lister")
    (tmp_path / "lab-manifests").mkdir()
    # a lab's own MDIVICOM_PLUGIN_PATH, set in the shell profile
    env = dict(
        os.environ, MDIVICOM_PLUGIN_PATH=str(tmp_path / "lab-manifests"), MDIVICOM_BACKEND="docker"
    )
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path / "lister",
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "1 passed" in tests.stdout
    check = subprocess.run(
        [MDIVICOM, "plugins", "check", "lister", "--json"],
        env=dict(env, MDIVICOM_PLUGIN_PATH=str(tmp_path / "lister")),
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    statuses = {c["name"]: c["status"] for c in json.loads(check.stdout)}
    assert statuses["provenance.json"] == "pass"
    assert set(statuses.values()) == {"pass"}


def test_an_image_for_a_python_scaffold_is_refused_not_dropped(tmp_path):
    """`plugins new tool --image ...` (the --kind forgotten) wrote a python package
    and dropped the image without a word."""
    made = subprocess.run(
        [MDIVICOM, "plugins", "new", "tool", "--dir", str(tmp_path / "tool"),
         "--image", "localhost/mdivicom-test:1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 2
    assert made.stderr.splitlines()[-1] == "Error: --image is for --kind container"
    assert not (tmp_path / "tool").exists()


def test_a_dir_that_cannot_be_made_is_one_line_exit_2(tmp_path):
    """A --dir through a file (or read-only, or another user's) was `internal error
    (NotADirectoryError: ...)`, exit 1."""
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "tool"
    made = subprocess.run(
        [MDIVICOM, "plugins", "new", "tool", "--dir", str(folder)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 2, made.stdout + made.stderr
    assert made.stderr == (
        f"Error: cannot write the plugin into {str(folder)!r} (Not a directory: {folder}); "
        "nothing was written, choose another --dir\n"
    )


def test_a_scaffold_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    """A write that failed after the first files (a full disk) left a half project,
    which the next try then refused as `already exists`."""
    real_write = Path.write_text
    written: list[str] = []

    def write_until_full(self, *args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        written.append(str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_until_full)
    folder = tmp_path / "tool"
    with pytest.raises(UsageError, match="No space left on device") as raised:
        scaffold("tool", folder=folder)
    assert raised.value.exit_code == 2
    assert len(written) == 1 and not folder.exists()


@pytest.mark.parametrize("kind", ["python", "container"])
def test_every_import_of_a_scaffold_is_used(tmp_path, kind):
    """The scaffold is where an author starts: its run module and its test imported
    `re` and never used it, the first thing a linter (ruff, flake8: F401) reports."""
    import ast

    folder = scaffold("tidy", kind=kind, folder=tmp_path / "tidy", publisher="lab")
    sources = sorted(folder.rglob("*.py"))
    assert sources
    for source in sources:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        imported = {
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and getattr(node, "module", "") != "__future__"
            for alias in node.names
        }
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert imported <= used, f"{source.name} imports {sorted(imported - used)} unused"


def _run_json(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([MDIVICOM, *args, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_bumping_a_python_scaffold_is_one_line(tmp_path):
    """The version was written in pyproject.toml, meta.version and provenance.json:
    an author who bumped pyproject.toml to 0.2.0 got records and bundles naming
    0.1.0 for the code of 0.2.0. `__version__` is now the one place."""
    scaffold("tidy", folder=tmp_path / "tidy", publisher="lab")
    init = tmp_path / "tidy" / "src" / "mdivicom_tidy" / "__init__.py"
    init.write_text(init.read_text().replace('"0.1.0"', '"0.2.0"'))
    target = tmp_path / "site"
    pip_install_target(target, tmp_path / "tidy")
    env = dict(os.environ, PYTHONPATH=str(target), MDIVICOM_PLUGIN_PATH="")
    info = _run_json(env, "plugins", "info", "lab/tidy")
    assert (info["version"], info["distribution"]) == (
        "0.2.0",
        {"name": "mdivicom-tidy", "version": "0.2.0"},
    )
    dataset = make_sample_dataset(tmp_path / "study", sessions=1) / "sessions" / "ses-01"
    record = _run_json(
        env, "run", "lab/tidy", "--dataset", str(dataset), "--out", str(tmp_path / "o")
    )
    provenance = json.loads((tmp_path / "o" / "tidy" / "provenance.json").read_text())
    assert (record["plugin"]["version"], provenance["version"]) == ("0.2.0", "0.2.0")


def test_bumping_a_container_scaffold_is_one_line(tmp_path):
    # its provenance.json said "0.1.0" whatever meta.version said
    need_engine("docker")
    _new_container_plugin(tmp_path / "lister")
    manifest = tmp_path / "lister" / "lister.json"
    manifest.write_text(manifest.read_text().replace('"version": "0.1.0"', '"version": "0.2.0"'))
    env = dict(os.environ, MDIVICOM_PLUGIN_PATH=str(tmp_path / "lister"), MDIVICOM_BACKEND="docker")
    dataset = make_sample_dataset(tmp_path / "study", sessions=1) / "sessions" / "ses-01"
    _run_json(env, "run", "lister", "--dataset", str(dataset), "--out", str(tmp_path / "o"))
    provenance = json.loads((tmp_path / "o" / "lister" / "provenance.json").read_text())
    assert provenance == {"tool": "lister", "version": "0.2.0"}
