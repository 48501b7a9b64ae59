"""How often a run walks its dataset, and what the dataset manifests beside the records cost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdivicomtools import run_plugin
from mdivicomtools.records.digest import read_manifest, scan_dataset
from pluginsite import cli_without_dac, unreadable

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


def manifests(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "_runs" / "datasets").iterdir())


def test_runs_over_an_unchanged_dataset_share_one_manifest(site, tmp_path):
    """Each run wrote `_runs/datasets/<run_id>.json`, 10 MB for 100,000 files: a lab
    running plugins every day over the same dataset filled its disk with copies. A
    manifest is named by its content now, so the copies are one file."""
    import hashlib

    dataset = sessions(tmp_path / "dataset")
    out = tmp_path / "out"
    site.plugin("writeone", run_source=WRITE_ONE)
    first = run_plugin("writeone", dataset=dataset, out=out)
    again = run_plugin("writeone", dataset=dataset, out=out, overwrite=True)
    hashed = run_plugin("writeone", dataset=dataset, out=out, overwrite=True, hash_dataset=True)
    assert first.dataset.manifest == again.dataset.manifest != hashed.dataset.manifest
    (name,) = {Path(r.dataset.manifest).name for r in (first, again)}
    data = (out / first.dataset.manifest).read_bytes()
    assert name == hashlib.sha256(data).hexdigest() + ".json"
    assert manifests(out) == sorted([name, Path(hashed.dataset.manifest).name])
    # a change to the dataset is a new manifest; the earlier records keep naming theirs
    (dataset / "sessions" / "ses-00" / "frame-9.txt").write_text("new")
    changed = run_plugin("writeone", dataset=dataset, out=out, overwrite=True)
    assert len(manifests(out)) == 3
    assert read_manifest(out, first.dataset.manifest).files == [
        f
        for f in read_manifest(out, changed.dataset.manifest).files
        if f.path != "sessions/ses-00/frame-9.txt"
    ]
    # and what reads them names the change since an earlier run
    done = site.cli("verify", str(out), first.run_id)
    assert "sessions/ses-00/frame-9.txt" in done.stdout + done.stderr, done


@pytest.mark.parametrize("planted", ["same size", "symlink"])
def test_a_manifest_is_reused_only_when_it_holds_exactly_its_content(site, tmp_path, planted):
    """A manifest found under the name a run would write was kept when its size
    matched: a file of that size put there (by a colleague in a shared --out, or
    a symlink to one) became what verify compares the dataset with."""
    dataset = sessions(tmp_path / "dataset")
    out = tmp_path / "out"
    site.plugin("writeone", run_source=WRITE_ONE)
    first = run_plugin("writeone", dataset=dataset, out=out)
    path = out / first.dataset.manifest
    data = path.read_bytes()
    forged = data.replace(b"frame-0.txt", b"frame-X.txt")
    assert forged != data and len(forged) == len(data)
    if planted == "symlink":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_bytes(forged)
        path.unlink()
        path.symlink_to(elsewhere)
    else:
        path.write_bytes(forged)
    again = run_plugin("writeone", dataset=dataset, out=out, overwrite=True)
    assert again.dataset.manifest == first.dataset.manifest
    assert not path.is_symlink() and path.read_bytes() == data
    if planted == "symlink":
        assert elsewhere.read_bytes() == forged  # what the link led to is left alone


def age(path: Path, seconds: float) -> None:
    import time

    then = time.time() - seconds
    os.utime(path, (then, then))


def test_runs_clean_removes_the_manifests_no_record_names(site, tmp_path):
    """A deleted record left its manifest for good: `runs clean` never removed one.
    It removes those no record names now, an earlier release's `<run_id>.json`
    named by its record is kept, and so is one written in the last hour (a run in
    progress names its manifest only in its final record)."""
    import json

    dataset = sessions(tmp_path / "dataset")
    out = tmp_path / "out"
    site.plugin("writeone", run_source=WRITE_ONE)
    kept = run_plugin("writeone", dataset=dataset, out=out)
    (dataset / "more.txt").write_text("more")
    deleted = run_plugin("writeone", dataset=dataset, out=out, overwrite=True)
    (dataset / "more.txt").write_text("more, again")
    old = run_plugin("writeone", dataset=dataset, out=out, overwrite=True)
    # the third run as an earlier release recorded it: its manifest named by its run id
    folder = out / "_runs" / "datasets"
    record_path = out / "_runs" / f"{old.run_id}.json"
    (folder / Path(old.dataset.manifest).name).rename(folder / f"{old.run_id}.json")
    data = json.loads(record_path.read_text())
    data["dataset"]["manifest"] = f"_runs/datasets/{old.run_id}.json"
    record_path.write_text(json.dumps(data))
    (out / "_runs" / f"{deleted.run_id}.json").unlink()
    (folder / "0123abcd.json").write_text("{}")  # unnamed, but just written
    for path in folder.iterdir():
        if path.name != "0123abcd.json":
            age(path, 7200)  # past the hour a manifest is kept unnamed
    before = manifests(out)

    done = site.cli("runs", "clean", str(out))
    assert done.returncode == 0, done.stderr
    gone = Path(deleted.dataset.manifest).name
    assert manifests(out) == sorted(set(before) - {gone})
    assert Path(kept.dataset.manifest).name in manifests(out)
    assert f"removed 1 dataset manifest(s) no record names from {folder}" in done.stdout
    assert "1 item(s) cleaned" in done.stderr
    assert site.cli("verify", str(out), old.run_id).returncode == 0
    assert site.cli("runs", "clean", str(out)).stdout == ""  # nothing more to do


def test_runs_clean_removes_no_manifest_while_a_record_cannot_be_read(site, tmp_path):
    dataset = sessions(tmp_path / "dataset")
    out = tmp_path / "out"
    site.plugin("writeone", run_source=WRITE_ONE)
    record = run_plugin("writeone", dataset=dataset, out=out)
    (out / "_runs" / "20200101T000000Z_00000000.json").write_text('{"status": ')  # cut short
    (out / "_runs" / f"{record.run_id}.json").unlink()
    for path in (out / "_runs" / "datasets").iterdir():
        age(path, 7200)
    done = site.cli("runs", "clean", str(out))
    # the unreadable record may name it: kept
    assert manifests(out) == [Path(record.dataset.manifest).name], done.stdout


def test_the_walk_keeps_a_file_path_only_where_its_listed_name_is_not_the_path(tmp_path):
    """Each file of the walk kept its whole path beside its relative one, a tenth of
    a run's memory on 100,000 files; only a name listed escaped needs it now."""
    import hashlib

    from mdivicomtools.records.digest import scan_dataset, stat_fingerprint, walk_files
    from mdivicomtools.runner.datasetwalk import walk_dataset

    dataset = sessions(tmp_path / "dataset", count=3, files=400)  # 1,201 files
    odd = dataset / "sessions" / os.fsdecode(b"ses-\xff")
    odd.mkdir()
    (odd / "a.txt").write_text("odd")
    for files in (walk_dataset(dataset).files, walk_files(dataset)):
        kept = {f.rel: f.path for f in files if f.path is not None}
        assert kept == {"sessions/ses-\\xff/a.txt": str(odd / "a.txt")}
        assert {f.location(str(dataset)) for f in files} == {
            str(p) for p in dataset.rglob("*") if p.is_file()
        }
    # and the fingerprint is the documented sha256 over every line, past any chunk
    info, manifest = scan_dataset(dataset, contents=True, cache=False)
    text = "".join(f"{f.path}\0{f.size}\0{f.mtime_ns}\n" for f in manifest.files)
    assert info.fingerprint == hashlib.sha256(text.encode()).hexdigest()
    assert info.fingerprint == stat_fingerprint(manifest.files)
    assert len(manifest.files) == 1202


@pytest.mark.parametrize("hashed", [False, True])
def test_a_batch_checks_a_session_with_one_walk_and_lists_its_files_only_to_hash(
    tmp_path, monkeypatch, hashed
):
    """A batch checks every session before the first starts, and each walks its
    dataset again when it runs: the check makes the digest's file list only for
    --hash-dataset, whose files must open (a 100,000-file walk took 60% longer
    with it)."""
    from mdivicomtools.records import digest
    from mdivicomtools.runner import datasetwalk
    from mdivicomtools.runner.run import dataset_problems

    dataset = sessions(tmp_path / "dataset")
    listed: list[str] = []
    real = digest.dataset_entry

    def dataset_entry(entry, rel, root):
        listed.append(rel)
        return real(entry, rel, root)

    monkeypatch.setattr(datasetwalk, "dataset_entry", dataset_entry)
    scanned = count_scans(monkeypatch, dataset)
    assert dataset_problems(dataset, contents=hashed) == []
    assert len(scanned) == 5
    assert len(listed) == (13 if hashed else 0)


def count_scans_across_forks(monkeypatch, root: Path, log: Path) -> None:
    """Every os.scandir of a folder in `root`, appended to `log` by whichever
    process makes it: a batch's sessions run in forked workers. Forked, whatever
    threads an earlier test of this process left: a worker started by spawn (the
    batch's choice when the process has threads) would not inherit the count and
    would scan unseen (a CI rehearsal on 3.13 counted ses-01 once)."""
    from mdivicomtools.batch import local

    monkeypatch.setattr(local, "start_method", lambda: "fork")
    real = os.scandir
    top = os.fsencode(root)

    def scandir(path=".", *args, **kwargs):
        if os.fsencode(path).startswith(top):
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                os.write(fd, os.fsencode(path) + b"\n")
            finally:
                os.close(fd)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)


def scans_of(log: Path) -> list[str]:
    return [os.fsdecode(line) for line in log.read_bytes().splitlines()] if log.exists() else []


@pytest.mark.parametrize("hashed", [False, True])
def test_a_resumed_batch_walks_a_session_once_to_decide_and_check_it(
    site, tmp_path, monkeypatch, hashed
):
    """--resume walked a session's folder to compare it with its last run, the
    check before the batch walked it again, and the run a third time before its
    plugin: one walk in the plan serves the decision and the check now. Every
    folder of a session that runs again is walked three times (the plan, the
    run before its plugin, the run after it), one that is skipped once; and the
    records and the summary say what they said."""
    from mdivicomtools.batch import run_batch

    dataset = sessions(tmp_path / "dataset")
    site.plugin("writeone", run_source=WRITE_ONE)
    out = tmp_path / "out"
    first = run_batch("writeone", dataset=dataset, out=out, sessions="ses-*", jobs=1)
    assert [s.status for s in first.sessions] == ["succeeded"] * 3
    changed = dataset / "sessions" / "ses-01"
    (changed / "frame-9.txt").write_text("new")
    (changed / "notes").mkdir()
    (changed / "notes" / "a.txt").write_text("note")
    log = tmp_path / "scans.log"
    count_scans_across_forks(monkeypatch, dataset / "sessions", log)
    again = run_batch(
        "writeone",
        dataset=dataset,
        out=out,
        sessions="ses-*",
        jobs=1,
        resume=True,
        hash_dataset=hashed,
    )
    monkeypatch.undo()
    by_session = {s.session: s for s in again.sessions}
    assert by_session["ses-01"].status == "succeeded"
    assert by_session["ses-01"].reason == "input changed: 2 file(s)"
    assert by_session["ses-00"].status == by_session["ses-02"].status == "skipped"
    scanned = scans_of(log)
    for session, result in by_session.items():
        folder = dataset / "sessions" / session
        folders = [str(p) for p in [folder, *folder.rglob("*")] if p.is_dir()]
        walks = 3 if result.status == "succeeded" else 1
        mine = [p for p in scanned if p == str(folder) or p.startswith(str(folder) + "/")]
        assert sorted(mine) == sorted(folders * walks), (session, mine)

    # and the record of a session that ran again says what a walk of its own says
    record = json.loads(
        next((out / "ses-01" / "_runs").glob(f"{by_session['ses-01'].run_id}.json")).read_text()
    )
    alone, files = scan_dataset(changed, contents=hashed, cache=False)
    assert record["dataset"]["fingerprint"] == alone.fingerprint
    assert record["dataset"]["digest"] == alone.digest
    assert read_manifest(out / "ses-01", record["dataset"]["manifest"]) == files


def test_a_resumed_session_whose_walk_finds_a_folder_it_cannot_read_is_refused(site, tmp_path):
    """The check before a batch uses the walk --resume made of a session: a folder
    in it that cannot be read still refuses the batch before anything runs."""
    from mdivicomtools.batch import run_batch

    dataset = sessions(tmp_path / "dataset")
    site.plugin("writeone", run_source=WRITE_ONE)
    out = tmp_path / "out"
    run_batch("writeone", dataset=dataset, out=out, sessions="ses-*", jobs=1)
    locked = dataset / "sessions" / "ses-01" / "locked"
    locked.mkdir()
    with unreadable(locked):
        done = cli_without_dac(
            *("run", "writeone", "--dataset", str(dataset), "--out", str(out)),
            *("--sessions", "ses-*", "--resume"),
            env=site.env(),
        )
    assert done.returncode == 2, done.stderr
    assert "ses-01: the dataset cannot be read: Permission denied" in done.stderr, done.stderr
    assert str(locked) in done.stderr
    assert len(list((out / "ses-01" / "_runs").glob("*.json"))) == 1  # nothing ran
