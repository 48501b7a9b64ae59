"""`mdivicom images list|pull|save|load` on the real Docker Engine and Podman.

The round trip uses an image of its own, imported from a one-file tar with
random content: loading an archive adds its digest to the image it names (Podman
keeps digests per image, not per tag), so a round trip through a tag of the
shared test image would change what other tests see.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid

import pytest

from containerkit import container_plugin
from engines import TEST_IMAGE, engine_cli

pytestmark = pytest.mark.engines


def cli_engine(engine, *args, check=True):
    return subprocess.run(
        [*engine_cli(engine), *args], capture_output=True, text=True, check=check, timeout=120
    )


def image_id(engine, ref):
    result = cli_engine(engine, "image", "inspect", ref, "--format", "{{.Id}}", check=False)
    return result.stdout.strip().removeprefix("sha256:") if result.returncode == 0 else None


@pytest.fixture
def own_tag(engine, tmp_path):
    token = uuid.uuid4().hex
    content = tmp_path / "token"
    content.write_text(token * 4000)  # big enough to see that the tar holds a layer
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(content, arcname="token")
    ref = f"localhost/mdivicom-roundtrip-{token[:8]}:1"
    cli_engine(engine, "import", str(rootfs), ref)
    yield ref
    cli_engine(engine, "rmi", ref, check=False)


def test_save_and_load_round_trip(site, tmp_path, engine, own_tag):
    original = image_id(engine, own_tag)
    tar = tmp_path / "carry" / "images.tar"
    tar.parent.mkdir()
    result = site.cli("images", "save", own_tag, "-o", str(tar), "--backend", engine)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"saved {own_tag} from {engine} to {tar}\n"
    assert tar.stat().st_size > 100_000
    assert [p.name for p in tar.parent.iterdir()] == ["images.tar"]  # no partial file left
    cli_engine(engine, "rmi", own_tag)
    assert image_id(engine, own_tag) is None
    result = site.cli("images", "load", str(tar), "--backend", engine)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"loaded {own_tag} into {engine}\n"
    assert image_id(engine, own_tag) == original


def test_save_and_load_json_for_a_ci_script(site, tmp_path, engine, own_tag):
    """`images save/load/pull` had no --json (every listing and report has one): a CI
    job that carries images to an offline site parsed `loaded X into Y` lines."""
    tar = tmp_path / "images.tar"
    saved = site.cli("images", "save", own_tag, "-o", str(tar), "--backend", engine, "--json")
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout) == {"engine": engine, "images": [own_tag], "file": str(tar)}
    cli_engine(engine, "rmi", own_tag)
    loaded = site.cli("images", "load", str(tar), "--backend", engine, "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {"engine": engine, "images": [own_tag]}
    # a pull that fails is the error document, as for every --json command
    absent = "localhost/mdivicom-absent:0"
    pulled = site.cli("images", "pull", absent, "--backend", engine, "--json")
    assert pulled.returncode == 1
    error = json.loads(pulled.stdout)["error"]
    assert error["exit_code"] == 1 and absent in error["message"], error


def test_list_shows_present_and_missing_plugin_images(site, engine):
    container_plugin(site, "here", "true")
    container_plugin(site, "gone", "true", image="localhost/mdivicom-absent:0")
    result = site.cli("images", "list", "--json", "--backend", engine)
    assert result.returncode == 0, result.stderr
    rows = {row["image"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {TEST_IMAGE, "localhost/mdivicom-absent:0"}
    here, gone = rows[TEST_IMAGE], rows["localhost/mdivicom-absent:0"]
    assert (here["engine"], here["present"], here["plugins"]) == (engine, True, ["lab/here"])
    assert here["id"].removeprefix("sha256:") == image_id(engine, TEST_IMAGE)
    assert here["size"] > 0
    assert (gone["present"], gone["id"], gone["plugins"]) == (False, None, ["lab/gone"])
    table = site.cli("images", "list", "--backend", engine)
    assert table.returncode == 0, table.stderr
    assert any(
        line.split()[:3] == ["localhost/mdivicom-absent:0", engine, "missing"]
        for line in table.stdout.splitlines()
    )


def test_list_without_backend_covers_both_engines(site):
    container_plugin(site, "here", "true")
    result = site.cli("images", "list", "--json")
    assert result.returncode == 0, result.stderr
    engines = {row["engine"] for row in json.loads(result.stdout)}
    assert {"docker", "podman"} <= engines


def test_save_of_a_missing_image_is_exit_2_and_writes_nothing(site, tmp_path, engine):
    folder = tmp_path / "carry"
    folder.mkdir()
    tar = folder / "x.tar"
    result = site.cli(
        "images", "save", "localhost/mdivicom-absent:0", "-o", str(tar), "--backend", engine
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: localhost/mdivicom-absent:0 not on {engine}; pull or load it first "
        "(`mdivicom images list` shows what each engine has)\n"
    )
    assert list(folder.iterdir()) == []


def test_pull_without_a_registry_is_exit_1_naming_the_image(site, engine):
    result = site.cli("images", "pull", "localhost/mdivicom-absent:0", "--backend", engine)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"Error: {engine}: pulling 'localhost/mdivicom-absent:0' failed"
    )
    assert len(result.stderr.splitlines()) == 1


def test_save_to_a_folder_is_exit_2(site, tmp_path):
    result = site.cli("images", "save", TEST_IMAGE, "-o", str(tmp_path))
    assert result.returncode == 2
    assert "is a folder; name the tar file to write" in result.stderr


def test_save_into_a_missing_folder_or_through_a_file_says_which(site, tmp_path):
    """A folder that is a file was reported as one that does not exist."""
    (tmp_path / "a-file").write_text("")
    for folder, state in (
        (tmp_path / "none", "does not exist"),
        (tmp_path / "a-file", "is not a folder"),
    ):
        result = site.cli("images", "save", TEST_IMAGE, "-o", str(folder / "x.tar"))
        assert result.returncode == 2
        assert result.stderr == (
            f"Error: -o {str(folder / 'x.tar')!r}: the folder {str(folder)!r} {state}\n"
        )


def test_load_of_a_missing_file_is_exit_2(site, tmp_path):
    result = site.cli("images", "load", str(tmp_path / "none.tar"))
    assert result.returncode == 2
    assert "is not a file; give the tar that `images save` wrote" in result.stderr


def test_load_of_a_file_that_is_not_an_image_is_exit_1(site, tmp_path, engine):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all")
    result = site.cli("images", "load", str(junk), "--backend", engine)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"Error: {engine}: loading")


@pytest.mark.parametrize("timeout", ["nan", "inf"])
def test_pull_with_a_timeout_that_is_no_limit_is_exit_2_before_any_engine(site, timeout):
    """click's FloatRange lets NaN through (it compares false with its bound)."""
    result = site.cli("images", "pull", "localhost/mdivicom-absent:0", "--timeout", timeout)
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: --timeout must be a positive, finite number of seconds, got {timeout}\n"
    )
