"""How often a run walks its dataset, and what the dataset manifests beside the records cost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdivicomtools import run_plugin
from mdivicomtools.records.digest import read_manifest, scan_dataset

WRITE_ONE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "done.txt").write_text("done")
    return {}
"""


@pytest.fixture(autouse=True)
def private_digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MDIVICOM_DIGEST_CACHE", str(tmp_path / "cache" / "sha256.sqlite"))


def sessions(root: Path, count: int = 3, files: int = 4) -> Path:
    """A dataset of `count` session folders of `files` files, and a result bundle."""
    for s in range(count):
        folder = root / "sessions" / f"ses-{s:02}"
        folder.mkdir(parents=True)
        for f in range(files):
            (folder / f"frame-{f}.txt").write_text(f"{s}-{f}")
    (root / "resultbundle.json").write_text('{"resultbundle_type": "lab.rows.v1"}')
    return root


def count_scans(monkeypatch, root: Path) -> list[str]:
    """Every os.scandir of a folder in `root`, as it happens."""
    scanned: list[str] = []
    real = os.scandir
    top = os.fsencode(root)

    def scandir(path=".", *args, **kwargs):
        if os.fsencode(path).startswith(top):
            scanned.append(os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    return scanned


@pytest.mark.parametrize("hashed", [False, True])
def test_a_run_walks_its_dataset_once_before_the_plugin_and_once_after(
    site, tmp_path, monkeypatch, hashed
):
    """The read-only check, the --hash-dataset open check, the digest with its
    manifest and the result bundles each walked the dataset: three walks of a
    100,000-file dataset before every run, four with --hash-dataset. One walk
    serves them all; only the check after the plugin walks again."""
    dataset = sessions(tmp_path / "dataset")
    folders = 1 + 1 + 3  # the dataset, sessions/, three session folders
    site.plugin("writeone", run_source=WRITE_ONE)
    scanned = count_scans(monkeypatch, dataset)
    record = run_plugin("writeone", dataset=dataset, out=tmp_path / "out", hash_dataset=hashed)
    assert record.status == "succeeded", record.error
    assert len(scanned) == 2 * folders, scanned
    every_folder = [str(p) for p in [dataset, *dataset.rglob("*")] if p.is_dir()]
    assert sorted(set(scanned)) == sorted(every_folder)

    # and the record says what a walk of its own says
    monkeypatch.undo()
    alone, files = scan_dataset(dataset, contents=hashed, cache=False)
    assert (record.dataset.files, record.dataset.bytes) == (alone.files, alone.bytes)
    assert record.dataset.fingerprint == alone.fingerprint
    assert record.dataset.digest == alone.digest
    assert read_manifest(tmp_path / "out", record.dataset.manifest) == files
    assert [b.path for b in record.input_bundles] == ["resultbundle.json"]


def test_the_check_after_a_run_finds_what_comparing_two_fingerprints_found(tmp_path):
    """The check after the plugin compares as it walks, holding no second fingerprint
    of the dataset; what it finds is what comparing two whole ones found."""
    from mdivicomtools.runner.fingerprint import changes_since, compare, fingerprint

    dataset = sessions(tmp_path / "dataset")
    before = fingerprint(dataset)
    assert not changes_since(before, dataset)
    ses = dataset / "sessions" / "ses-01"
    (ses / "frame-0.txt").write_text("rewritten")
    (ses / "frame-1.txt").unlink()
    (ses / "new.txt").write_text("added")
    (dataset / "sessions" / "ses-02").chmod(0o700)
    (dataset / "sessions" / "ses-03").mkdir()
    (dataset / "link").symlink_to("resultbundle.json")
    changes = changes_since(before, dataset)
    assert changes == compare(before, fingerprint(dataset))
    # a folder's own entry changes with its mode, not with what is added to it
    assert changes.changed == ["sessions/ses-01/frame-0.txt", "sessions/ses-02/"]
    assert changes.added == ["link", "sessions/ses-01/new.txt", "sessions/ses-03/"]
    assert changes.removed == ["sessions/ses-01/frame-1.txt"]
