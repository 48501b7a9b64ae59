"""Dataset digests, `verify`, `rerun` and content-aware `--resume` with python plugins."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import textwrap
from pathlib import Path

import msgspec
import pytest

from mdivicomtools import rerun, run_batch, run_plugin, verify_out
from mdivicomtools.errors import UsageError
from mdivicomtools.model.run import RunRecord
from mdivicomtools.records import digest as digest_module
from mdivicomtools.records.digest import DigestCache, read_manifest, scan_dataset
from mdivicomtools.records.store import read_record
from mdivicomtools.records.verify import verify_all
from mdivicomtools.runner.rerun import SecretsMissing, VersionChanged
from pluginsite import cli_without_dac

COPY = """
import pathlib, shutil
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    out = pathlib.Path(out_dir)
    for src in sorted(pathlib.Path(dataset_dir).rglob("*.txt")):
        dst = out / src.relative_to(dataset_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text().upper() + config.get("suffix", ""))
    return {"ok": True}
"""

BUNDLED = """
import pathlib
from mdivicomtools.resultbundle import write_resultbundle
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "rows.tsv").write_text("onset\\tlabel\\n1.5\\tnod\\n")
    write_resultbundle(out_dir, resultbundle_type="lab.rows.v1")
    return {}
"""

RANDOM = """
import os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "stable.txt").write_text("same every time")
    pathlib.Path(out_dir, "noise.bin").write_bytes(os.urandom(16))
    return {}
"""


@pytest.fixture(autouse=True)
def private_digest_cache(tmp_path, monkeypatch):
    """Each test its own cache file, so no test sees another's (or the user's) entries."""
    monkeypatch.setenv("MDIVICOM_DIGEST_CACHE", str(tmp_path / "cache" / "sha256.sqlite"))


DOCS = Path(__file__).parents[1] / "docs" / "reproducibility.md"


def documented_recipe():
    """The digest recipe docs/reproducibility.md gives ("Compute it yourself with:")."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("Compute it yourself with:")) + len("```python\n")
    return textwrap.dedent(text[start : text.index("```", start)])


def manual_digest(root):
    """The dataset digest as a user computes it, by running the documented recipe."""
    recipe = documented_recipe()
    line = 'root = pathlib.Path("study/sessions/ses-01")'
    assert line in recipe
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(recipe.replace(line, f"root = pathlib.Path({str(root)!r})"), {})
    return printed.getvalue().strip()


def later(path, text):
    """Rewrite a file so that its mtime surely differs from before."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


# -- the dataset digest ------------------------------------------------------


def test_hash_dataset_records_a_content_digest_and_the_file_list(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, hash_dataset=True)
    assert record.status == "succeeded"
    info = record.dataset
    assert info.digest == manual_digest(dataset)
    assert (info.files, info.bytes) == (2, len("one\ntwo\n") + len("three\n"))
    # named by its content: runs over an unchanged dataset share it
    written = (out / info.manifest).read_bytes()
    assert info.manifest == f"_runs/datasets/{hashlib.sha256(written).hexdigest()}.json"
    manifest = read_manifest(out, info.manifest)
    assert [f.path for f in manifest.files] == ["a.txt", "sessions/ses-01/b.txt"]
    assert manifest.files[0].sha256 == hashlib.sha256(b"one\ntwo\n").hexdigest()
    # the record on disk carries the same section; `runs list` ignores the manifest folder
    assert read_record(out / "_runs" / f"{record.run_id}.json").dataset == info
    assert site.cli("runs", "list", str(out)).stderr == ""


@pytest.mark.parametrize("hashed", [False, True])
def test_a_dataset_file_name_that_is_not_utf8_is_listed_escaped(site, dataset, tmp_path, hashed):
    """One such name made the file list beside the record unwritable: the run died
    after its output was promoted, its record left `running` (then `abandoned`).
    It is listed escaped, as the output inventory lists such names, and verifies."""
    site.plugin("copy", run_source=COPY)
    (dataset / os.fsdecode(b"bad\xffname")).write_bytes(b"x")
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, hash_dataset=hashed)
    assert record.status == "succeeded", record.error
    assert record.warnings == []
    manifest = read_manifest(out, record.dataset.manifest)
    assert "bad\\xffname" in [f.path for f in manifest.files]
    [report] = verify_out(out)
    assert report.ok and report.dataset.matches is True, report


def test_without_the_flag_only_a_stat_fingerprint_is_recorded(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    record = run_plugin("copy", dataset=dataset, out=tmp_path / "out")
    assert record.dataset.digest is None
    assert len(record.dataset.fingerprint) == 64 and record.dataset.files == 2


def test_the_user_config_can_make_hashing_the_default(site, dataset, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("hash_dataset = true\n")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    site.plugin("copy", run_source=COPY)
    record = run_plugin("copy", dataset=dataset, out=tmp_path / "out")
    assert record.dataset.digest == manual_digest(dataset)
    off = run_plugin("copy", dataset=dataset, out=tmp_path / "out2", hash_dataset=False)
    assert off.dataset.digest is None


def test_a_warm_digest_reads_no_file_and_a_changed_file_is_read_again(
    dataset, tmp_path, monkeypatch
):
    cache = tmp_path / "c.sqlite"
    first, _ = scan_dataset(dataset, contents=True, cache=cache)
    reads = []
    real = digest_module.sha256_file
    monkeypatch.setattr(
        digest_module, "sha256_file", lambda p, *stop: reads.append(p) or real(p, *stop)
    )
    second, _ = scan_dataset(dataset, contents=True, cache=cache)
    assert second.digest == first.digest and reads == []
    later(dataset / "a.txt", "changed\n")
    third, _ = scan_dataset(dataset, contents=True, cache=cache)
    assert [p.name for p in reads] == ["a.txt"]
    assert third.digest == manual_digest(dataset) != first.digest


def test_a_long_digest_says_how_far_it_got(site, dataset, tmp_path, monkeypatch):
    """A first digest of 100,000 files left a run silent for 6 s after `validate`, and
    one of a video study for minutes: it reads as hung. Every PROGRESS_EVERY_S (here
    0, so every file) a line says how far it got; files from the cache are not counted."""
    cache = tmp_path / "c.sqlite"
    monkeypatch.setattr(digest_module, "PROGRESS_EVERY_S", 0.0)
    lines: list[str] = []
    scan_dataset(dataset, contents=True, cache=cache, progress=lines.append)
    assert lines == [
        "dataset: hashed 1 of 2 file(s) not in the digest cache, 0 of 0 MiB",
        "dataset: hashed 2 of 2 file(s) not in the digest cache, 0 of 0 MiB",
    ]
    lines.clear()
    scan_dataset(dataset, contents=True, cache=cache, progress=lines.append)
    assert lines == []  # all from the cache: nothing is read

    site.plugin("copy", run_source=COPY)
    monkeypatch.setenv("MDIVICOM_DIGEST_CACHE", str(tmp_path / "run.sqlite"))
    said: list[str] = []
    record = run_plugin("copy", dataset=dataset, out=tmp_path / "out", hash_dataset=True,
                        progress=said.append)  # fmt: skip
    assert record.status == "succeeded"
    hashed = [line for line in said if line.startswith("dataset: hashed")]
    assert len(hashed) == 2 and said.index(hashed[-1]) < said.index(
        next(line for line in said if line.startswith("dataset: 2 file(s)"))
    )


def test_an_unusable_cache_costs_speed_never_the_digest(dataset, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    info, _ = scan_dataset(dataset, contents=True, cache=blocker / "cache.sqlite")
    assert info.digest == manual_digest(dataset)
    assert DigestCache(blocker / "x.sqlite").get_many([(1, 2, 3, 4, 5)]) == [None]


def test_hashing_many_files_with_bounded_threads_matches_one_thread(tmp_path):
    root = tmp_path / "many"
    (root / "a").mkdir(parents=True)
    # "a-c" sorts before "a/b" as a string (the digest's order), after it as a Path
    (root / "a-c").write_text("dash")
    (root / "a" / "b").write_text("slash")
    for i in range(50):
        (root / f"f{i:02}.bin").write_bytes(os.urandom(i * 100))
    threaded, _ = scan_dataset(root, contents=True, workers=4, cache=False)
    single, _ = scan_dataset(root, contents=True, workers=1, cache=False)
    assert threaded.digest == single.digest == manual_digest(root)


def test_hashing_gives_up_between_blocks_once_told_to_stop(tmp_path):
    import threading

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    stop = threading.Event()
    assert digest_module.sha256_file(big, stop) == hashlib.sha256(big.read_bytes()).hexdigest()
    stop.set()
    with pytest.raises(digest_module.HashingStopped):
        digest_module.sha256_file(big, stop)


def test_an_error_while_hashing_stops_the_other_threads(tmp_path, monkeypatch):
    root = tmp_path / "d"
    root.mkdir()
    for i in range(20):
        (root / f"f{i:02}").write_bytes(os.urandom(2 << 20))
    started = []
    real = digest_module.sha256_file

    def sha256_file(path, stop=None):
        started.append(path.name)
        if path.name == "f03":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, stop)

    monkeypatch.setattr(digest_module, "sha256_file", sha256_file)
    with pytest.raises(PermissionError):
        scan_dataset(root, contents=True, workers=2, cache=False)
    # bounded: the files after the failing one were never all started
    assert len(started) < 20


def test_symlinked_files_are_hashed_by_content_and_dangling_links_by_target(tmp_path):
    root = tmp_path / "annexed"
    (root / ".git" / "annex").mkdir(parents=True)
    (root / ".git" / "annex" / "obj").write_text("video bytes")
    (root / "video.mp4").symlink_to(".git/annex/obj")
    (root / "gone.mp4").symlink_to(".git/annex/missing")
    _, manifest = scan_dataset(root, contents=True, cache=False)
    files = {f.path: f for f in manifest.files}
    assert files["video.mp4"].sha256 == hashlib.sha256(b"video bytes").hexdigest()
    assert files["gone.mp4"].size == -1 and len(files["gone.mp4"].sha256) == 64


def test_the_documented_recipe_gives_the_recorded_digest_with_symlinks(site, dataset, tmp_path):
    """The recipe skipped a symlink to a folder and a dangling link, which the
    digest lists by their target text: it gave another digest for such a dataset."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "c.txt").write_text("four\n")
    (dataset / "linked.txt").symlink_to("a.txt")
    (dataset / "folder").symlink_to(tmp_path / "elsewhere")
    (dataset / "gone.mp4").symlink_to(".git/annex/objects/SHA256E-s5--abc.mp4")
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, hash_dataset=True)
    assert record.status == "succeeded", record.error
    assert record.dataset.digest == manual_digest(dataset)
    manifest = read_manifest(out, record.dataset.manifest)
    assert [f.path for f in manifest.files] == [
        "a.txt", "folder", "gone.mp4", "linked.txt", "sessions/ses-01/b.txt",
    ]  # fmt: skip
    assert record.dataset.files == 5


def test_an_unreadable_dataset_file_fails_the_run_with_a_record(
    site, dataset, tmp_path, monkeypatch
):
    # root reads every file, so the permission error is simulated at the read
    real = digest_module.sha256_file

    def sha256_file(path, *stop):
        if path.name == "b.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *stop)

    monkeypatch.setattr(digest_module, "sha256_file", sha256_file)
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, hash_dataset=True)
    assert record.status == "failed"
    assert record.error.type == "DatasetUnreadable"
    assert (
        "b.txt" in record.error.message
        and "make every file and folder of the dataset readable" in record.error.message
    )
    assert not (out / "copy").exists()
    assert (out / "_runs" / f"{record.run_id}.json").exists()


def test_a_symlink_loop_in_the_dataset_is_listed_not_followed(tmp_path):
    root = tmp_path / "loop"
    root.mkdir()
    (root / "self").symlink_to(root / "self")
    info, manifest = scan_dataset(root, contents=True, cache=False)
    assert [f.path for f in manifest.files] == ["self"] and info.digest


def test_old_records_without_a_dataset_section_still_load(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out)
    path = out / "_runs" / f"{record.run_id}.json"
    data = json.loads(path.read_text())
    del data["dataset"], data["rerun_of"]
    path.write_text(json.dumps(data))
    old = msgspec.json.decode(path.read_bytes(), type=RunRecord)
    assert old.dataset is None and old.rerun_of is None
    [report] = verify_out(out)
    assert report.ok and report.dataset.checked == "not recorded"


def test_plugins_are_told_their_final_output_folder(site, dataset, tmp_path):
    site.plugin(
        "where",
        run_source=(
            "import os, pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    pathlib.Path(out_dir, 'where.txt').write_text(\n"
            "        out_dir + '\\n' + os.environ['MDIVICOM_FINAL_OUT_DIR'])\n"
        ),
    )
    out = tmp_path / "out"
    record = run_plugin("where", dataset=dataset, out=out)
    staged, final = (out / "where" / "where.txt").read_text().splitlines()
    assert "_staging" in staged and not os.path.exists(staged)
    assert final == str(out / "where") == record.out_dir and os.path.isdir(final)


# -- verify ------------------------------------------------------------------


@pytest.fixture
def verified_run(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, hash_dataset=True)
    assert record.status == "succeeded"
    return out, record


def test_verify_right_after_a_run_matches_and_exits_0(site, verified_run):
    out, record = verified_run
    [report] = verify_out(out)
    assert report.ok and report.run_id == record.run_id
    assert report.dataset.checked == "digest" and report.dataset.matches is True
    result = site.cli("verify", str(out))
    assert result.returncode == 0, result.stderr
    assert f"lab/copy run {record.run_id}: ok" in result.stdout
    assert "outputs: 2 of 2 file(s) as recorded" in result.stdout
    assert "dataset: matches the record's digest" in result.stdout


def test_verify_by_a_user_who_may_not_read_all_of_the_dataset_says_not_checked(
    site, verified_run, dataset
):
    """A colleague verifying a run on a shared dataset with a folder only its owner may
    enter was told `DIFFERS` and `dataset: DIFFERS from the record's digest`, though
    nothing had changed: what cannot be read is not known to differ. It is `NOT
    CHECKED`, still exit 1 (the run is not verified)."""
    out, record = verified_run
    private = dataset / "sessions"
    private.chmod(0o700)
    os.chown(private, 65534, 65534)  # nobody's
    try:
        result = cli_without_dac("verify", str(out), env=site.env())
    finally:
        os.chown(private, os.getuid(), os.getgid())
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"lab/copy run {record.run_id}: NOT CHECKED",
        "  outputs: 2 of 2 file(s) as recorded",
        f"  dataset: not checked (this user may not read all of it: Permission denied: "
        f"'{private}'; verify as a user who can)",
    ]


def test_verify_out_takes_a_string_as_the_readme_shows(site, verified_run):
    out, record = verified_run
    [report] = verify_out(str(out))  # README: verify_out("results")
    assert report.ok and report.run_id == record.run_id


def test_verify_follows_a_moved_output_folder(site, verified_run, dataset, tmp_path):
    out, _ = verified_run
    moved = tmp_path / "archive" / "results"
    moved.parent.mkdir()
    out.rename(moved)
    [report] = verify_out(moved)
    assert report.ok and report.out_dir == str(moved / "copy")
    later(dataset / "a.txt", "edited after the move\n")
    [changed] = verify_out(moved)
    assert changed.dataset.changed == ["a.txt"]  # the file list beside the record still found


def test_verify_of_an_older_run_says_it_was_superseded(site, verified_run, dataset):
    out, first = verified_run
    second = run_plugin("copy", dataset=dataset, out=out, sets=["suffix=!"], overwrite=True)
    assert second.status == "succeeded"
    result = site.cli("verify", str(out), first.run_id)
    assert result.returncode == 1  # the outputs there are not the first run's
    assert f"superseded by run {second.run_id}, whose outputs replaced this run's" in result.stdout
    assert "output modified: a.txt" in result.stdout
    [older] = verify_out(out, first.run_id)
    [newest] = verify_out(out)
    assert older.superseded_by == second.run_id and not older.ok
    assert newest.superseded_by is None and newest.ok


def test_verify_takes_a_run_as_rerun_and_runs_export_take_it(site, dataset, tmp_path):
    """`verify` found a run only by its whole id, where `runs show`, `rerun` and `runs
    export` take a unique start of one too (`mdivicom verify OUT 20261125T2247` said
    there was no such run); and its `latest` with no succeeded run named no status."""
    site.plugin("flaky", run_source=FLAKY)
    out = tmp_path / "out"
    good = run_plugin("flaky", dataset=dataset, out=out)
    run_plugin("flaky", dataset=dataset, out=out, sets=["fail=true"], overwrite=True)
    result = site.cli("verify", str(out), good.run_id[:-3])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"lab/flaky run {good.run_id}: ok"), result.stdout
    only_failed = tmp_path / "failed"
    failed = run_plugin("flaky", dataset=dataset, out=only_failed, sets=["fail=true"])
    result = site.cli("verify", str(only_failed))
    assert result.returncode == 2
    assert (
        f"no succeeded run recorded in {str(only_failed)!r} (its latest run {failed.run_id} "
        "failed); verify checks a succeeded run" in result.stderr
    ), result.stderr


FLAKY = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if config.get("fail"):
        raise ValueError("asked to fail")
    pathlib.Path(out_dir, "result.csv").write_text("a,b\\n")
    return {}
"""


def test_verify_latest_names_the_other_plugins_it_did_not_check(site, dataset, tmp_path):
    """`verify results` of a run root shared by two plugins checked the newest run
    only: it said ok, exit 0, with the other plugin's output altered, and nothing
    said that output was not looked at."""
    site.plugin("copy", run_source=COPY)
    site.plugin("flaky", run_source=FLAKY)
    out = tmp_path / "out"
    first = run_plugin("copy", dataset=dataset, out=out)
    run_plugin("flaky", dataset=dataset, out=out)
    (out / "copy" / "a.txt").write_text("altered")
    result = site.cli("verify", str(out))
    assert result.returncode == 0  # what it checked, lab/flaky, is as recorded
    assert result.stdout.startswith("lab/flaky run ")
    assert (
        f"note: not checked: the outputs of lab/copy (run {first.run_id}); `latest` is the "
        f"newest succeeded run only: `mdivicom verify {out} --all` checks every plugin's"
    ) in result.stderr
    assert verify_all(out).unchecked and not verify_all(out, every_plugin=True).unchecked
    # with --all, or a run named by its id, there is nothing left unsaid
    every = site.cli("verify", str(out), "--all")
    assert every.returncode == 1 and "not checked" not in every.stderr
    named = site.cli("verify", str(out), first.run_id)
    assert named.returncode == 1 and "not checked" not in named.stderr


def test_verify_all_with_no_succeeded_run_is_bad_input(site, dataset, tmp_path):
    site.plugin("bad", run_source="def run(*a, **k):\n    raise ValueError('no')\n")
    out = tmp_path / "out"
    run_plugin("bad", dataset=dataset, out=out)
    result = site.cli("verify", str(out), "--all")
    assert result.returncode == 2 and "no succeeded run" in result.stderr


def test_verify_names_a_modified_output_byte(site, verified_run):
    out, record = verified_run
    target = out / "copy" / "a.txt"
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    result = site.cli("verify", str(out), record.run_id, "--json")
    assert result.returncode == 1
    [report] = json.loads(result.stdout)
    assert report["ok"] is False and report["modified"] == ["a.txt"]
    assert report["missing"] == [] and report["extra"] == []
    assert "output modified: a.txt" in site.cli("verify", str(out)).stdout


LINKED = """
import os, pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    out = pathlib.Path(out_dir)
    out.joinpath("a.txt").write_text("A")
    out.joinpath("b.txt").write_text("B")
    os.symlink("a.txt", out / "latest")
    return {}
"""


def test_verify_names_an_output_symlink_pointed_elsewhere_or_replaced(site, dataset, tmp_path):
    """An output symlink was recorded with an empty sha256 and compared by it alone:
    `latest -> a.txt` pointed at b.txt, at a host file, or replaced by a FIFO was
    `ok`, exit 0, `3 of 3 file(s) as recorded`."""
    site.plugin("linked", run_source=LINKED)
    out = tmp_path / "out"
    result = run_plugin("linked", dataset=dataset, out=out)
    link = out / "linked" / "latest"
    [recorded] = [o for o in result.outputs if o.path == "latest"]
    assert recorded.type == "symlink"
    assert recorded.sha256 == hashlib.sha256(b"symlink:a.txt").hexdigest()
    assert verify_out(out)[0].ok
    for change in (
        lambda: link.symlink_to("b.txt"),
        lambda: link.symlink_to("/etc/hosts"),
        lambda: os.mkfifo(link),
    ):
        link.unlink()
        change()
        [report] = verify_out(out)
        assert not report.ok and report.modified == ["latest"], report
    link.unlink()
    link.symlink_to("a.txt")
    assert verify_out(out)[0].ok


def test_verify_of_an_older_record_compares_a_symlink_by_its_type_and_length(
    site, dataset, tmp_path
):
    """Records before symlink digests list a symlink with an empty sha256: it still
    matches while it is a link of the same length, not when it became a file."""
    site.plugin("linked", run_source=LINKED)
    out = tmp_path / "out"
    result = run_plugin("linked", dataset=dataset, out=out)
    path = out / "_runs" / f"{result.run_id}.json"
    data = json.loads(path.read_text())
    for output in data["outputs"]:
        if output["type"] == "symlink":
            output["sha256"] = ""  # as an earlier release wrote it
    path.write_text(json.dumps(data))
    assert verify_out(out)[0].ok
    link = out / "linked" / "latest"
    link.unlink()
    link.write_text("a.txt")
    [report] = verify_out(out)
    assert not report.ok and report.modified == ["latest"]


def test_verify_names_deleted_and_added_outputs(site, verified_run):
    out, _ = verified_run
    (out / "copy" / "sessions" / "ses-01" / "b.txt").unlink()
    (out / "copy" / "notes.txt").write_text("added by hand")
    [report] = verify_out(out)
    assert not report.ok
    assert report.missing == ["sessions/ses-01/b.txt"] and report.extra == ["notes.txt"]
    result = site.cli("verify", str(out))
    assert result.returncode == 1
    assert "output missing: sessions/ses-01/b.txt" in result.stdout
    assert "output extra: notes.txt" in result.stdout


def test_verify_names_a_changed_dataset_file(site, verified_run, dataset):
    out, _ = verified_run
    later(dataset / "sessions" / "ses-01" / "b.txt", "THREE, edited\n")
    (dataset / "new.txt").write_text("new")
    [report] = verify_out(out)
    assert not report.ok and report.modified == []
    assert report.dataset.matches is False
    assert report.dataset.changed == ["sessions/ses-01/b.txt"]
    assert report.dataset.added == ["new.txt"]
    result = site.cli("verify", str(out))
    assert result.returncode == 1
    assert "dataset changed: sessions/ses-01/b.txt" in result.stdout


def test_verify_by_fingerprint_notices_a_changed_size(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    run_plugin("copy", dataset=dataset, out=out)
    (dataset / "a.txt").write_text("one\ntwo\nthree\n")
    [report] = verify_out(out)
    assert report.dataset.checked == "fingerprint"
    assert report.dataset.changed == ["a.txt"] and not report.ok


def test_verify_bad_input_exits_2_with_one_line(site, tmp_path, verified_run):
    out, _ = verified_run
    missing = site.cli("verify", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("Error: ") and "is not a folder" in missing.stderr
    unknown = site.cli("verify", str(out), "20200101T000000Z_deadbeef")
    assert unknown.returncode == 2 and "no run '20200101T000000Z_deadbeef'" in unknown.stderr


def test_verify_a_failed_run_is_refused(site, dataset, tmp_path):
    site.plugin("bad", run_source="def run(*a, **k):\n    raise ValueError('no')\n")
    out = tmp_path / "out"
    record = run_plugin("bad", dataset=dataset, out=out)
    with pytest.raises(UsageError, match="kept no outputs to verify"):
        verify_out(out, record.run_id)
    with pytest.raises(UsageError, match="no succeeded run"):
        verify_out(out)


def test_verify_a_batch_checks_every_session(site, tmp_path):
    site.plugin("copy", run_source=COPY)
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
        (data / "sessions" / name / "x.txt").write_text(name)
    out = tmp_path / "batch"
    summary = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, hash_dataset=True)
    assert summary.status == "succeeded"
    reports = verify_out(out)
    assert [(r.session, r.ok) for r in reports] == [("ses-01", True), ("ses-02", True)]
    (out / "ses-02" / "copy" / "x.txt").write_text("tampered")
    result = site.cli("verify", str(out), "--all")
    assert result.returncode == 1
    assert "ses-01: lab/copy run" in result.stdout and "ses-02: lab/copy run" in result.stdout
    assert "output modified: x.txt" in result.stdout


FAILS_ON_SES_02 = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if pathlib.Path(dataset_dir).name == "ses-02":
        raise ValueError("no")
    pathlib.Path(out_dir, "x.txt").write_text("ok")
"""


def test_verify_a_batch_names_the_sessions_it_skipped(site, tmp_path):
    """A failed session was left out silently: the report read as a batch wholly verified."""
    site.plugin("flaky", run_source=FAILS_ON_SES_02)
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
    out = tmp_path / "batch"
    summary = run_batch("flaky", dataset=data, out=out, sessions="*", jobs=1)
    assert summary.totals == {"succeeded": 1, "failed": 1}
    [failed] = [r for r in summary.sessions if r.status == "failed"]
    line = (
        f"ses-02: skipped: no succeeded run (its latest run {failed.run_id} failed; a run "
        "that did not succeed keeps no outputs)"
    )
    result = site.cli("verify", str(out))
    assert result.returncode == 0, result.stdout  # skipped sessions do not change it
    assert result.stdout.splitlines()[-1] == line
    as_json = site.cli("verify", str(out), "--json")
    assert as_json.returncode == 0
    assert [r["session"] for r in json.loads(as_json.stdout)] == ["ses-01"]
    assert as_json.stderr.splitlines() == [line]


MAKES_DATASET = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    view = pathlib.Path(out_dir, "dataset", "sessions", "ses-01")
    view.mkdir(parents=True)
    (view / "x.txt").write_text("made upstream")
"""


@pytest.mark.parametrize("how", ["copied", "moved"])
def test_verify_rebases_a_chained_dataset_with_the_run_root(site, dataset, tmp_path, how):
    """A dataset inside the same --out (another plugin's output) was looked for at the
    recorded path: a copy was checked against the original's dataset, and a moved
    run root reported `DIFFERS from the record's missing`."""
    site.plugin("make", run_source=MAKES_DATASET)
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "results"
    assert run_plugin("make", dataset=dataset, out=out).status == "succeeded"
    chained = run_plugin("copy", dataset=out / "make" / "dataset", out=out, hash_dataset=True)
    assert chained.status == "succeeded", chained.error
    elsewhere = tmp_path / "elsewhere"
    (shutil.copytree if how == "copied" else shutil.move)(out, elsewhere)
    if how == "copied":  # the original's dataset changes; the copy's does not
        (out / "make" / "dataset" / "sessions" / "ses-01" / "x.txt").write_text("changed")
    [report] = verify_out(elsewhere)
    assert report.ok and report.dataset.matches is True, report.dataset
    assert report.dataset.path == str(elsewhere / "make" / "dataset")
    result = site.cli("verify", str(elsewhere))
    assert result.returncode == 0, result.stdout
    assert "dataset: matches the record's digest" in result.stdout
    # a rerun reads the dataset there too
    again = rerun(elsewhere, "latest", new_out=tmp_path / "again")
    assert again.record.dataset_dir == str(elsewhere / "make" / "dataset")
    assert again.dataset_matches is True
    shutil.rmtree(elsewhere / "make" / "dataset")
    result = site.cli("verify", str(elsewhere))
    assert result.returncode == 1
    assert (
        f"  dataset: DIFFERS: the dataset folder is gone ({elsewhere / 'make' / 'dataset'})"
        in result.stdout.splitlines()
    ), result.stdout


MAKES_SESSIONS = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for name in ("ses-01", "ses-02"):
        view = pathlib.Path(out_dir, "dataset", "sessions", name)
        view.mkdir(parents=True)
        (view / "x.txt").write_text(name)
"""


def chained_batch(site, dataset, tmp_path):
    """`make` over the whole dataset, then a batch of `copy` over its sessions, both
    into one --out: the folder is a run root and a batch's --out at once."""
    site.plugin("make", run_source=MAKES_SESSIONS)
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "results"
    assert run_plugin("make", dataset=dataset, out=out).status == "succeeded"
    summary = run_batch("copy", dataset=out / "make" / "dataset", out=out, sessions="*", jobs=1)
    assert summary.status == "succeeded", summary.sessions
    return out


def test_verify_and_runs_list_of_a_batch_chained_into_its_producers_out(site, dataset, tmp_path):
    """A folder with its own _runs/ was taken for a plain run root: `verify` (and
    `--all`) passed over every session of the batch chained into it and exited 0
    with a session's output tampered, while `runs list` showed only the sessions."""
    out = chained_batch(site, dataset, tmp_path)
    (out / "ses-02" / "copy" / "x.txt").write_text("tampered")
    for options in ((), ("--all",)):
        result = site.cli("verify", str(out), *options)
        assert result.returncode == 1, result.stdout
        verdicts = [line for line in result.stdout.splitlines() if not line.startswith(" ")]
        assert [line.rsplit(" ", 1)[-1] for line in verdicts] == ["ok", "ok", "DIFFERS"]
        assert verdicts[0].startswith("lab/make run ")
        assert verdicts[1].startswith("ses-01: lab/copy run ")
        assert verdicts[2].startswith("ses-02: lab/copy run ")
        assert "  output modified: x.txt" in result.stdout
    assert [(r.session, r.plugin) for r in verify_out(out)] == [
        (None, "lab/make"),
        ("ses-01", "lab/copy"),
        ("ses-02", "lab/copy"),
    ]
    # one run of the folder itself is still found by its id
    make_id = json.loads(site.cli("runs", "show", str(out), "latest", "--json").stdout)["run_id"]
    [report] = verify_out(out, make_id)
    assert report.plugin == "lab/make" and report.ok
    listed = json.loads(site.cli("runs", "list", str(out), "--json").stdout)
    assert [(row["session"], row["plugin"]) for row in listed] == [
        (None, "lab/make"),
        ("ses-01", "lab/copy"),
        ("ses-02", "lab/copy"),
    ]
    table = site.cli("runs", "list", str(out)).stdout.splitlines()
    assert table[1].split()[:3] == ["-", "lab/make", "succeeded"]


def test_a_copied_chained_batch_checks_and_reruns_its_own_copy_of_the_dataset(
    site, dataset, tmp_path
):
    """A session's dataset in the batch's --out (the upstream plugin's output) lies
    outside the session's run root, so it was not re-based: a copy was checked
    against the original's dataset, and with the original moved every session said
    `the dataset folder is gone`."""
    out = chained_batch(site, dataset, tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.move(out, tmp_path / "moved")
    result = site.cli("verify", str(copy))
    assert result.returncode == 0, result.stdout
    reports = verify_out(copy)
    assert [r.dataset.path for r in reports[1:]] == [
        str(copy / "make" / "dataset" / "sessions" / name) for name in ("ses-01", "ses-02")
    ]
    again = rerun(copy / "ses-01", "latest", new_out=tmp_path / "again")
    assert again.record.dataset_dir == str(copy / "make" / "dataset" / "sessions" / "ses-01")
    assert again.same_outputs
    shutil.rmtree(copy / "make")
    result = site.cli("rerun", str(copy / "ses-02"), "latest")
    assert result.returncode == 2
    assert "it was another plugin's output in the same --out" in result.stderr


def test_a_plugin_output_holding_runs_is_not_taken_for_a_session(site, dataset, tmp_path):
    """Only folders that are not the output of the folder's own runs are sessions."""
    site.plugin(
        "archive",
        run_source="""
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "_runs").mkdir()
    pathlib.Path(out_dir, "_runs", "kept.txt").write_text("a copy of old records")
""",
    )
    out = tmp_path / "results"
    assert run_plugin("archive", dataset=dataset, out=out).status == "succeeded"
    outcome = verify_all(out)
    assert [(r.session, r.ok) for r in outcome.reports] == [(None, True)]
    assert outcome.skipped == []
    listed = json.loads(site.cli("runs", "list", str(out), "--json").stdout)
    assert [(row["plugin"], "session" in row) for row in listed] == [("lab/archive", False)]


# -- rerun -------------------------------------------------------------------


def test_rerun_of_a_deterministic_plugin_is_identical_and_linked(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out, sets=["suffix=!"], hash_dataset=True)
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.same_outputs and report.config_matches and report.dataset_matches
    assert report.identical == ["a.txt", "sessions/ses-01/b.txt"]
    assert report.record.rerun_of == original.run_id
    assert report.record.dataset.digest == original.dataset.digest
    assert (tmp_path / "again" / "copy" / "a.txt").read_text() == "ONE\nTWO\n!"
    result = site.cli("rerun", str(out), "latest")
    assert result.returncode == 0, result.stderr
    assert f"rerun of {original.run_id}" in result.stdout
    assert "identical:  2 file(s)" in result.stdout
    # without --out the rerun goes beside the original, never over it
    [folder] = (out / "_reruns").iterdir()
    assert (folder / "copy" / "a.txt").exists()
    assert read_record(out / "_runs" / f"{original.run_id}.json").run_id == original.run_id


def test_rerun_into_an_existing_output_names_no_option_rerun_lacks(site, dataset, tmp_path):
    # it said "pass --overwrite to replace it", and rerun has no --overwrite
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out)
    first = site.cli("rerun", str(out), "latest", "--out", str(tmp_path / "again"))
    assert first.returncode == 0, first.stderr
    for target in (out, tmp_path / "again"):  # the original's own, an earlier rerun's
        result = site.cli("rerun", str(out), "latest", "--out", str(target))
        assert result.returncode == 2
        assert "--overwrite" not in result.stderr
        assert f"{str(target / 'copy')!r} already exists (from run " in result.stderr
        assert (
            "a rerun writes into a new folder, never over an output: choose another "
            "--out, or leave it out (OUT/_reruns/<id>/)"
        ) in result.stderr
    assert read_record(out / "_runs" / f"{original.run_id}.json").status == "succeeded"


def test_rerun_repeats_timeout_and_isolation(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out, timeout=90, isolate=True)
    assert (original.timeout_s, original.isolate) == (90, True)
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.same_outputs and report.mounts_match is None
    assert (report.record.timeout_s, report.record.isolate) == (90, True)
    shorter = rerun(out, original.run_id, new_out=tmp_path / "shorter", timeout=30)
    assert (shorter.record.timeout_s, shorter.record.isolate) == (30, True)


def test_rerun_of_a_non_deterministic_plugin_reports_differences(site, dataset, tmp_path):
    site.plugin("noisy", run_source=RANDOM)
    out = tmp_path / "out"
    original = run_plugin("noisy", dataset=dataset, out=out)
    result = site.cli("rerun", str(out), original.run_id, "--out", str(tmp_path / "r1"))
    assert result.returncode == 1
    assert "differs:    noise.bin" in result.stdout
    assert "identical:  1 file(s)" in result.stdout
    accepted = site.cli(
        "rerun", str(out), original.run_id, "--out", str(tmp_path / "r2"), "--allow-differences"
    )
    assert accepted.returncode == 0 and "differs:    noise.bin" in accepted.stdout
    as_json = site.cli("rerun", str(out), original.run_id, "--out", str(tmp_path / "r3"), "--json")
    data = json.loads(as_json.stdout)
    assert data["differing"] == ["noise.bin"] and data["identical"] == ["stable.txt"]
    assert data["record"]["rerun_of"] == original.run_id


def test_rerun_sets_aside_only_the_run_stamps_of_result_bundles(site, dataset, tmp_path):
    site.plugin("rows", run_source=BUNDLED)
    out = tmp_path / "out"
    original = run_plugin("rows", dataset=dataset, out=out)
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    sidecars = [
        json.loads((folder / "rows" / "resultbundle.json").read_text())
        for folder in (out, tmp_path / "again")
    ]
    # each run stamps its own id into the sidecar, so the bytes always differ
    assert [s["producer"]["pipeline_run_id"] for s in sidecars] == [
        original.run_id,
        report.record.run_id,
    ]
    assert report.same_outputs and report.differing == []
    assert (report.identical, report.stamped) == (["rows.tsv"], ["resultbundle.json"])
    result = site.cli("rerun", str(out), original.run_id, "--out", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same data:  resultbundle.json (only its run stamps differ)" in result.stdout
    # an original sidecar changed since its run proves nothing: a plain difference
    sidecar = out / "rows" / "resultbundle.json"
    sidecar.write_text(sidecar.read_text().replace("lab.rows.v1", "lab.rows.v2"))
    tampered = rerun(out, original.run_id, new_out=tmp_path / "after")
    assert tampered.differing == ["resultbundle.json"] and not tampered.same_outputs


def test_sidecars_compare_equal_only_when_nothing_but_the_stamps_differ(tmp_path):
    from mdivicomtools.records.inventory import sha256_file
    from mdivicomtools.runner.stamps import same_apart_from_run_stamps

    base = {
        "resultbundle_type": "lab.rows.v1",
        "files": [{"path": "rows.tsv"}],
        "created_at": "2026-11-26T10:00:00Z",
        "producer": {"tool_ref": "lab/rows", "tool_version": "1.0", "pipeline_run_id": "a"},
    }
    original = tmp_path / "original.json"
    original.write_text(json.dumps(base))
    sha = sha256_file(original)

    def compare(**changes):
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**base, **changes}))
        return same_apart_from_run_stamps(original, sha, other)

    stamps = {"pipeline_run_id": "b", "tool_ref": "lab/rows", "tool_version": "1.0"}
    assert compare(created_at="2026-11-27T08:00:00Z", producer=stamps)
    assert not compare(producer={**stamps, "tool_version": "1.1"})
    assert not compare(files=[{"path": "rows.tsv"}, {"path": "more.tsv"}])
    assert not same_apart_from_run_stamps(original, "0" * 64, original)  # not what was recorded
    (tmp_path / "other.json").write_text("{not json")
    assert not same_apart_from_run_stamps(original, sha, tmp_path / "other.json")


def test_rerun_needs_redacted_secrets_again(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out, sets=["api.token=s3cret", "suffix=?"])
    assert original.config["api"]["token"] == "***REDACTED***"
    result = site.cli("rerun", str(out), original.run_id)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: the record redacted api.token; supply the value(s) again: --set api.token=..."
    )
    assert not (out / "_reruns").exists()
    report = rerun(out, original.run_id, new_out=tmp_path / "r", sets=["api.token=s3cret"])
    assert report.same_outputs and report.config_matches
    wrong = rerun(out, original.run_id, new_out=tmp_path / "w", sets=["api.token=other"])
    assert wrong.config_matches is False


def test_rerun_needs_a_secret_inside_an_array_again(site, dataset, tmp_path):
    """The record redacts `servers[0].token`; a rerun that missed it ran the plugin
    with the placeholder as the secret, and exited 0."""
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    servers = '[{"token":"s3cr3t-abc","host":"h"}]'
    original = run_plugin("copy", dataset=dataset, out=out, sets=[f"servers={servers}"])
    assert original.config["servers"] == [{"token": "***REDACTED***", "host": "h"}]
    result = site.cli("rerun", str(out), original.run_id)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        "Error: the record redacted servers[0].token; supply the value(s) again: "
        "--set 'servers=...' with the whole array as JSON, the secret filled in "
        "(--set cannot name servers[0].token on its own)"
    )
    assert not (out / "_reruns").exists()
    report = rerun(out, original.run_id, new_out=tmp_path / "r", sets=[f"servers={servers}"])
    assert report.same_outputs and report.config_matches


def test_redaction_and_the_rerun_find_the_same_secrets():
    """One walk for both: every value redaction replaced, the rerun asks for again."""
    from mdivicomtools.runner.config import redact
    from mdivicomtools.runner.rerun import redacted_keys

    config = {
        "api": {"token": "t"},
        "servers": [{"token": "a", "hosts": [{"password": {"x": 1}}]}, "plain", [{"key": 2}]],
        "a.b": {"secret": "s"},
    }
    assert redacted_keys(redact(config)) == [
        "api.token",
        "servers[0].token",
        "servers[0].hosts[0].password",
        "servers[2][0].key",
        "a.b.secret",
    ]
    assert redacted_keys(config) == []


def test_rerun_refuses_another_plugin_version(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out)
    record = out / "_runs" / f"{original.run_id}.json"
    data = json.loads(record.read_text())
    data["plugin"]["version"] = "0.9.0"
    record.write_text(json.dumps(data))
    with pytest.raises(VersionChanged, match=r"used lab/copy 0\.9\.0, but 1\.0\.0 is installed"):
        rerun(out, original.run_id)
    result = site.cli("rerun", str(out), original.run_id)
    assert result.returncode == 2 and "--allow-version-change" in result.stderr
    allowed = site.cli("rerun", str(out), original.run_id, "--allow-version-change")
    assert allowed.returncode == 0, allowed.stderr


def test_rerun_of_a_failed_run_is_refused(site, dataset, tmp_path):
    site.plugin("bad", run_source="def run(*a, **k):\n    raise ValueError('no')\n")
    out = tmp_path / "out"
    record = run_plugin("bad", dataset=dataset, out=out)
    with pytest.raises(UsageError, match=f"run {record.run_id} failed; rerun repeats a succ"):
        rerun(out, record.run_id)


def test_rerun_of_a_dry_run_says_what_it_was(site, dataset, tmp_path):
    # the refusal read "run X dry run; rerun repeats ..."
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    record = run_plugin("copy", dataset=dataset, out=out, dry_run=True)
    with pytest.raises(UsageError) as refused:
        rerun(out, record.run_id)
    assert str(refused.value) == (
        f"run {record.run_id} was a dry run; rerun repeats a succeeded run, whose outputs "
        "it can compare with"
    )


def test_rerun_on_a_moved_dataset(site, dataset, tmp_path):
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    original = run_plugin("copy", dataset=dataset, out=out, hash_dataset=True)
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    report = rerun(out, original.run_id, dataset=moved, new_out=tmp_path / "r")
    assert report.same_outputs and report.dataset_matches is True
    assert report.record.dataset_dir == str(moved)


def test_rerun_with_its_dataset_gone_names_it_not_a_dataset_option(site, dataset, tmp_path):
    """The rerun said `--dataset '...' does not exist` to a user who gave no --dataset;
    for a chained run, whose dataset was the upstream plugin's output, neither said
    what to do."""
    site.plugin("make", run_source=MAKES_DATASET)
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "results"
    assert run_plugin("make", dataset=dataset, out=out).status == "succeeded"
    chained = run_plugin("copy", dataset=out / "make" / "dataset", out=out)
    shutil.rmtree(out / "make")
    result = site.cli("rerun", str(out), chained.run_id)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: the dataset run {chained.run_id} read, "
        f"{str(out / 'make' / 'dataset')!r}, is gone; it was another plugin's output in the "
        "same --out: run that plugin again, or pass --dataset DIR where a copy is"
    )
    original = run_plugin("copy", dataset=dataset, out=tmp_path / "plain")
    shutil.move(dataset, tmp_path / "moved")
    result = site.cli("rerun", str(tmp_path / "plain"), original.run_id)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: the dataset run {original.run_id} read, {str(dataset)!r}, is gone; "
        "pass --dataset DIR where it is now"
    )
    report = rerun(tmp_path / "plain", original.run_id, dataset=tmp_path / "moved")
    assert report.same_outputs


def test_secret_keys_missing_are_found_at_any_depth():
    from mdivicomtools.runner.rerun import redacted_keys

    assert redacted_keys({"a": {"password": "***REDACTED***"}, "token": "***REDACTED***"}) == [
        "a.password",
        "token",
    ]
    with pytest.raises(SecretsMissing):
        from mdivicomtools.runner.rerun import rerun_options

        rerun_options(
            RunRecord(**{**_minimal_record(), "config": {"token": "***REDACTED***"}}),
            out=__import__("pathlib").Path("/nonexistent"),
            new_out=None,
            dataset=None,
            sets=(),
            allow_version_change=True,
        )


def _minimal_record():
    from mdivicomtools.model.run import BackendInfo, HostInfo, PluginInfo

    return {
        "run_id": "20260101T000000Z_00000000",
        "status": "succeeded",
        "plugin": PluginInfo(
            id="copy",
            publisher="lab",
            version="1.0.0",
            kind="python",
            api_version="mdivicomtools.plugin.v0.1",
            source="entry_point",
        ),
        "backend": BackendInfo(name="python"),
        "dataset_dir": "/d",
        "out_dir": "/o/copy",
        "run_out_dir": "/o",
        "work_dir": "/w",
        "config_sha256": "0" * 64,
        "started_at": "2026-01-01T00:00:00.000Z",
        "finished_at": "2026-01-01T00:00:01.000Z",
        "duration_s": 1.0,
        "exit_code": 0,
        "error": None,
        "outputs": [],
        "resultbundles": [],
        "host": HostInfo(),
        "extensions": {},
    }


# -- content-aware resume ----------------------------------------------------


@pytest.fixture
def three_sessions(site, tmp_path):
    site.plugin("copy", run_source=COPY)
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02", "ses-03"):
        (data / "sessions" / name).mkdir(parents=True)
        for i in range(3):
            (data / "sessions" / name / f"f{i}.txt").write_text(f"{name} {i}")
    out = tmp_path / "batch"
    first = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1)
    assert first.status == "succeeded"
    return data, out


def reasons(summary):
    return {r.session: (r.status, r.reason) for r in summary.sessions}


def test_resume_skips_only_unchanged_sessions_and_says_why(site, three_sessions):
    data, out = three_sessions
    later(data / "sessions" / "ses-01" / "f0.txt", "edited")
    (data / "sessions" / "ses-01" / "f9.txt").write_text("new file")
    (out / "ses-03" / "copy" / "f2.txt").unlink()
    summary = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    got = reasons(summary)
    assert got["ses-01"] == ("succeeded", "input changed: 2 file(s)")
    assert got["ses-02"][0] == "skipped" and "the same input" in got["ses-02"][1]
    assert got["ses-03"] == ("succeeded", "output missing: 1 file(s)")
    # now everything is up to date again
    again = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    assert again.totals == {"skipped": 3}


def test_resume_names_a_dead_runs_status_as_runs_list_does(site, three_sessions):
    """A batch killed outright leaves `running` records: `runs list` shows them as
    `abandoned` (their runner is gone), and --resume said `last run running`."""
    data, out = three_sessions
    (path,) = (out / "ses-02" / "_runs").glob("*.json")
    record = json.loads(path.read_text())
    record["status"] = "running"  # as a runner killed with SIGKILL leaves it
    path.write_text(json.dumps(record))
    summary = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    assert reasons(summary)["ses-02"] == ("succeeded", "last run was abandoned (its runner died)")
    listed = site.cli("runs", "list", str(out / "ses-02"))
    assert "abandoned" in listed.stdout, listed.stdout


def test_resume_never_counts_a_file_outside_the_output_folder_as_an_output(site, three_sessions):
    """An altered record whose output path leaves the folder (to a file of the same
    size) is not "the same output": the session runs again."""
    data, out = three_sessions
    (record_file,) = (out / "ses-02" / "_runs").glob("*.json")
    record = json.loads(record_file.read_text())
    first = record["outputs"][0]
    elsewhere = out.parent / "elsewhere.txt"
    elsewhere.write_bytes(b"x" * first["size"])
    # out/ses-02/copy/../../../elsewhere.txt is elsewhere.txt
    first["path"] = "../../../elsewhere.txt"
    record_file.write_text(json.dumps(record))
    summary = run_batch("copy", dataset=data, out=out, sessions="ses-02", jobs=1, resume=True)
    assert reasons(summary)["ses-02"] == ("succeeded", "output missing: 1 file(s)")


def test_resume_checks_an_output_whose_name_is_not_utf8(site, three_sessions):
    """Such an output is in the record escaped; resume skipped it, so a session whose
    only such output was deleted counted as up to date."""
    data, out = three_sessions
    odd = os.fsdecode(b"bad\xffname.txt")
    (data / "sessions" / "ses-01" / odd).write_text("odd")
    run_batch("copy", dataset=data, out=out, sessions="ses-01", jobs=1, resume=True)
    (out / "ses-01" / "copy" / odd).unlink()
    summary = run_batch("copy", dataset=data, out=out, sessions="ses-01", jobs=1, resume=True)
    assert reasons(summary)["ses-01"] == ("succeeded", "output missing: 1 file(s)")


def test_resume_reruns_every_session_after_a_config_change(site, three_sessions):
    data, out = three_sessions
    result = site.cli(
        "run",
        "copy",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--sessions",
        "*",
        "--jobs",
        "1",
        "--resume",
        "--set",
        "suffix=v2",
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("ses-")]
    assert len(rows) == 3 and all("config changed" in row for row in rows)
    assert (out / "ses-02" / "copy" / "f0.txt").read_text().endswith("v2")


def test_resume_compares_by_content_when_the_last_run_hashed(site, three_sessions):
    data, out = three_sessions
    run_batch(
        "copy", dataset=data, out=out, sessions="*", jobs=1, hash_dataset=True, overwrite=True
    )
    # same bytes written again: the stat fingerprint changes, the content does not
    target = data / "sessions" / "ses-02" / "f1.txt"
    later(target, target.read_text())
    summary = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    assert summary.totals == {"skipped": 3}
    later(target, "really different")
    changed = run_batch("copy", dataset=data, out=out, sessions="*", jobs=1, resume=True)
    assert reasons(changed)["ses-02"] == ("succeeded", "input changed: 1 file(s)")


def test_rerun_latest_is_the_newest_succeeded_run(site, dataset, tmp_path):
    """`rerun OUT latest` took the newest record of any status and refused it after
    a failed or dry run, where `verify latest` checks the newest succeeded run."""
    site.plugin("copy", run_source=COPY)
    out = tmp_path / "out"
    good = run_plugin("copy", dataset=dataset, out=out)
    run_plugin("copy", dataset=dataset, out=out, dry_run=True)
    report = rerun(out, "latest", new_out=tmp_path / "again")
    assert report.record.rerun_of == good.run_id and report.same_outputs


def test_rerun_latest_without_a_succeeded_run_says_so(site, dataset, tmp_path):
    site.plugin("bad", run_source="def run(*a, **k):\n    raise ValueError('no')\n")
    out = tmp_path / "out"
    record = run_plugin("bad", dataset=dataset, out=out)
    result = site.cli("rerun", str(out), "latest")
    assert result.returncode == 2, result.stderr
    assert (
        f"no succeeded run recorded in {str(out)!r} (its latest run {record.run_id} failed); "
        "rerun repeats a succeeded run" in result.stderr
    ), result.stderr


def test_a_dataset_file_replaced_by_a_fifo_after_the_walk_fails_the_digest_not_hangs(tmp_path):
    """The digest walks the dataset first and hashes later (seconds or hours later for
    large videos). A file someone replaced by a FIFO in between was opened like any
    file: the run waited in open() for a writer that never came."""
    import threading

    root = tmp_path / "dataset"
    root.mkdir()
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    walked = digest_module.walk_files(root)  # the run's one walk, before the plugin
    (root / "b.txt").unlink()
    os.mkfifo(root / "b.txt")
    outcome: list[BaseException | None] = []

    def digest() -> None:
        try:
            scan_dataset(root, contents=True, workers=1, cache=None, walked=walked)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=digest, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # let the hung open() return, then fail
        with open(root / "b.txt", "wb"):
            pass
        thread.join(10)
        pytest.fail("the digest waited on a FIFO")
    [raised] = outcome
    assert isinstance(raised, OSError)
    assert "b.txt is a fifo, not a regular file" in str(raised)
