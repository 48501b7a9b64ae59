"""The sdists and wheels a site builds and installs with plain pip, not the editable
checkout the rest of the suite runs from: what is missing or stray in them only
shows there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from mdivicomtools._version import __version__

ROOT = Path(__file__).parents[1]

#: what a clean checkout does not hold (the same as .gitignore)
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".tox",
    "build",
    "dist",
    ".demo",
    ".work",
)

#: the packages of the project itself, typed and versioned together: folder -> import package
PACKAGES = {
    ".": "mdivicomtools",
    "backends/docker": "mdivicomtools_docker",
    "backends/podman": "mdivicomtools_podman",
}
#: the examples, which labs install from the repository as their READMEs say
EXAMPLES = {
    "examples/minimal-plugin": "mdivicom_hello",
    "examples/site-provenance": "mdivicom_site_provenance",
    "examples/sync-audio": "mdivicom_sync_audio",
}
PROJECTS = PACKAGES | EXAMPLES


def build(project: str, out: Path) -> tuple[zipfile.ZipFile, tarfile.TarFile]:
    """Build the project's sdist, then its wheel from that sdist, as `python -m build`
    does. In this venv (whose dev extras bring setuptools), not an isolated one, like
    tests/pluginsite.py, and from a copy: the build writes into the source tree."""
    copy = out / "src"
    shutil.copytree(ROOT, copy, ignore=NOT_IN_A_CHECKOUT)
    backend = "import sys; from setuptools import build_meta as b; print(b.{}(sys.argv[1]))"
    sdist = subprocess.run(
        [sys.executable, "-c", backend.format("build_sdist"), str(out)],
        cwd=copy / project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    with tarfile.open(out / sdist) as archive:
        # the filter argument came in 3.10.12 and 3.11.4; without it 3.12+ warns
        if hasattr(tarfile, "data_filter"):
            archive.extractall(out / "unpacked", filter="data")
        else:  # pragma: no cover - an older 3.10 or 3.11
            archive.extractall(out / "unpacked")
    unpacked = next((out / "unpacked").iterdir())
    wheel = subprocess.run(
        [sys.executable, "-c", backend.format("build_wheel"), str(out)],
        cwd=unpacked,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[-1]
    return zipfile.ZipFile(out / wheel), tarfile.open(out / sdist)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """Each project built once for every test of this file that looks at it."""
    done: dict[str, tuple[zipfile.ZipFile, tarfile.TarFile]] = {}

    def get(project: str) -> tuple[str, zipfile.ZipFile, list[str]]:
        if project not in done:
            done[project] = build(project, tmp_path_factory.mktemp("dist"))
        wheel, sdist = done[project]
        return project, wheel, sdist.getnames()

    yield get
    for wheel, sdist in done.values():
        wheel.close()
        sdist.close()


@pytest.fixture(params=sorted(PROJECTS))
def built(request, dists):
    return dists(request.param)


@pytest.fixture(params=sorted(PACKAGES))
def package(request, dists):
    return dists(request.param)


def metadata(wheel: zipfile.ZipFile) -> dict[str, str]:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    message = Parser().parsestr(wheel.read(name).decode())
    return {"Version": message["Version"], "Description": message.get_payload()}


def test_the_wheel_holds_every_module_and_nothing_stray(built):
    project, wheel, _ = built
    package = PROJECTS[project]
    source = ROOT / project / "src" / package
    modules = {
        f"{package}/{p.relative_to(source).as_posix()}"
        for p in source.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    names = wheel.namelist()
    assert modules <= set(names)
    stray = [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "tests/" in n]
    assert stray == []


def test_the_wheel_is_typed(package):
    project, wheel, _ = package
    # without the marker, mypy treats every import of the package as Any
    # ("missing library stubs or py.typed marker")
    assert f"{PACKAGES[project]}/py.typed" in wheel.namelist()


def test_the_wheel_metadata_has_the_version(package):
    _, wheel, _ = package
    assert metadata(wheel)["Version"] == __version__ != "0.0.0"


def test_the_wheel_carries_the_licence(built):
    _, wheel, _ = built
    licence = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert len(licence) == 1
    # the backends' and examples' copies say what the repository's LICENSE says
    assert wheel.read(licence[0]) == (ROOT / "LICENSE").read_bytes()


def test_the_wheel_metadata_has_the_readme_as_description(built):
    project, wheel, _ = built
    title = (ROOT / project / "README.md").read_text().splitlines()[0]
    assert metadata(wheel)["Description"].lstrip().startswith(title)


def test_the_sdist_holds_no_partial_test_suite(built):
    _, _, names = built
    # setuptools picks up tests/test*.py on its own: without conftest.py and the
    # helper modules beside them (and docs/, examples/), a suite that cannot run
    assert [n for n in names if "/tests/" in n] == []
    assert any(n.endswith("/LICENSE") for n in names)
