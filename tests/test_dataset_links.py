"""Symbolic links in a dataset that a container cannot follow are named before the run."""

from __future__ import annotations

import os

import pytest

from containerkit import container_plugin
from mdivicomtools.runner import run_plugin
from mdivicomtools.runner.datasetlinks import unreachable_links, unreachable_links_note
from mdivicomtools.runner.fingerprint import fingerprint


@pytest.fixture
def annexed(tmp_path):
    """A datalad-like dataset: the session's files are links up into .git/annex."""
    top = tmp_path / "study"
    objects = top / ".git" / "annex" / "objects"
    session = top / "sessions" / "ses-01"
    objects.mkdir(parents=True)
    session.mkdir(parents=True)
    (objects / "KEY1").write_text("audio\n")
    (objects / "dir").mkdir()
    (session / "plain.txt").write_text("plain\n")
    os.symlink("../../.git/annex/objects/KEY1", session / "a.wav")
    os.symlink("../../.git/annex/objects/dir", session / "folder")
    os.symlink(str(session / "plain.txt"), session / "absolute.txt")
    os.symlink("plain.txt", session / "inside.txt")
    os.symlink("../../.git/annex/objects/NOT-FETCHED", session / "b.wav")
    return top, session


def test_links_out_of_the_folder_or_absolute_are_found(annexed):
    top, session = annexed
    assert unreachable_links(session, fingerprint(session)) == [
        ("a.wav", "../../.git/annex/objects/KEY1"),
        ("absolute.txt", str(session / "plain.txt")),
        ("folder", "../../.git/annex/objects/dir"),
    ]
    # from the dataset's top folder the relative links stay inside
    assert unreachable_links(top, fingerprint(top)) == [
        ("sessions/ses-01/absolute.txt", str(session / "plain.txt"))
    ]
    note = unreachable_links_note(session, fingerprint(session))
    assert note is not None
    assert note.startswith(
        "the dataset has 3 symbolic link(s) the container cannot follow: "
        "'a.wav' -> '../../.git/annex/objects/KEY1', "
    )
    plain = session.parent / "ses-02"
    plain.mkdir()
    (plain / "x").write_text("x")
    assert unreachable_links_note(plain, fingerprint(plain)) is None


@pytest.mark.engines
def test_a_container_run_warns_of_them_and_a_python_run_does_not(annexed, site, tmp_path, engine):
    """The container saw `a.wav` dangling while the host (and the dataset digest)
    read its content, and the run said nothing."""
    _, session = annexed
    container_plugin(site, "reader", "cat {dataset_dir}/plain.txt > {out_dir}/copy")
    record = run_plugin("reader", dataset=session, out=tmp_path / "out", backend=engine)
    assert record.status == "succeeded"
    [warning] = record.warnings
    assert warning.startswith("the dataset has 3 symbolic link(s) the container cannot follow")
    assert "give the folder that holds their targets as --dataset" in warning
    site.plugin("pyreader")
    record = run_plugin("pyreader", dataset=session, out=tmp_path / "py")
    assert record.status == "succeeded" and record.warnings == []
