"""The output inventory and the dataset fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from mdivicomtools.records.inventory import inventory
from mdivicomtools.runner.fingerprint import compare, fingerprint
from otheruser import as_another_user
from pluginsite import cli_without_dac


def test_inventory_hashes_every_file_in_parallel_like_sequentially(tmp_path):
    expected = []
    for index in range(20):
        data = os.urandom(1000 * index + 1)
        path = tmp_path / f"d{index % 3}" / f"f{index:02}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        expected.append(
            (path.relative_to(tmp_path).as_posix(), len(data), hashlib.sha256(data).hexdigest())
        )
    (tmp_path / "link").symlink_to(tmp_path / "d0")
    parallel = inventory(tmp_path, workers=4)
    # the symlink is listed with its type, not followed: its digest is of its target text
    link_size = os.lstat(tmp_path / "link").st_size
    link_sha = hashlib.sha256(b"symlink:" + os.fsencode(tmp_path / "d0")).hexdigest()
    assert [(o.path, o.size, o.sha256) for o in parallel] == sorted(
        [*expected, ("link", link_size, link_sha)]
    )
    assert {o.type for o in parallel if o.path != "link"} == {"file"}
    assert next(o for o in parallel if o.path == "link").type == "symlink"
    assert inventory(tmp_path, workers=1) == parallel


def test_symlinks_stay_inside_by_their_place_in_the_tree_wherever_it_is(tmp_path):
    """A relative link is resolved from its own place inside the tree: links that
    stay inside pass, and any way out through `..` is refused, even one that comes
    back in through the folder's own name (it would not after the folder moves)."""
    from mdivicomtools.common.safefs import scan

    root = tmp_path / "tool"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "f").write_text("f")
    links = {
        "sub/up": "../f",
        "sub/deep/up2": "../../f",
        "sub/through": "deep/../../f",
        "sub/deep/to_sub": "..",
        "sub/via": "deep/to_sub/../f",  # deep/to_sub is sub: sub/.. is the root
        "self": ".",
        "missing": "sub/not-there/../x",
        "loop_a": "loop_b",
        "loop_b": "loop_a",
        "out": "../tool/f",
        "sub/out2": "../../tool/f",
        "sub/through_link": "deep/to_sub/../..",  # sub/.. is root, root/.. is out
        "self_up": "self/..",
        "absolute": str(root / "f"),
    }
    for link, target in links.items():
        (root / link).symlink_to(target)
    problems = {e.path: e.problem for e in scan(root) if e.problem is not None}
    assert problems == {
        "out": "a symlink that leaves the output folder",
        "sub/out2": "a symlink that leaves the output folder",
        "sub/through_link": "a symlink that leaves the output folder",
        "self_up": "a symlink that leaves the output folder",
        "absolute": "a symlink to an absolute path",
    }


def test_listing_many_small_files_holds_a_few_in_flight(tmp_path):
    """The pool was handed every file at once: a future per file existed before the
    first was hashed, and an output of 200,000 small files took 450 MB to list.
    Now at most twice as many files as threads are in flight."""
    import tracemalloc

    for index in range(10000):
        (tmp_path / f"f{index:05d}").write_bytes(b"x")
    tracemalloc.start()
    try:
        listed = inventory(tmp_path, workers=4)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [entry.path for entry in listed] == [f"f{index:05d}" for index in range(10000)]
    assert {entry.sha256 for entry in listed} == {hashlib.sha256(b"x").hexdigest()}
    # beyond the inventory itself: the old pool.map took 18 MiB more here, now ~2 MiB
    assert peak - kept < 6 * 1024 * 1024, f"{(peak - kept) / 2**20:.1f} MiB in flight"


def test_a_file_that_grows_between_the_walk_and_its_hash_gets_the_size_hashed(tmp_path):
    """A process the plugin left running appends to an output while it is listed: the
    record gave the size the walk saw with the sha256 of the longer content read
    later, a pair that described no file. Size and digest now cover the same bytes."""
    from mdivicomtools.common.safefs import scan
    from mdivicomtools.records.inventory import inventory_of

    grown = tmp_path / "grow.bin"
    grown.write_bytes(b"a" * 100)
    entries = scan(tmp_path)  # the walk sees 100 bytes
    with grown.open("ab") as more:
        more.write(b"b" * 50)  # then the file grows before it is hashed
    (listed,) = inventory_of(tmp_path, entries, workers=1)
    assert listed.size == 150
    assert listed.sha256 == hashlib.sha256(b"a" * 100 + b"b" * 50).hexdigest()


def test_inventory_of_an_empty_folder(tmp_path):
    assert inventory(tmp_path) == []


def test_fingerprint_detects_changes_additions_removals_and_folders(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("2")
    before = fingerprint(tmp_path)
    assert not compare(before, fingerprint(tmp_path))
    (tmp_path / "a").write_text("11")
    (tmp_path / "sub" / "b").unlink()
    (tmp_path / "new").mkdir()
    changes = compare(before, fingerprint(tmp_path))
    assert (changes.changed, changes.added, changes.removed) == (["a"], ["new/"], ["sub/b"])
    assert changes.describe() == "changed a; added new/; removed sub/b"


def test_fingerprint_catches_a_chmod_of_a_folder_or_of_the_root(tmp_path):
    """A folder's mode is its own (a plugin opening the dataset to everyone with
    chmod 777 changed it unnoticed); the root's entry is the tree itself."""
    (tmp_path / "sub").mkdir()
    before = fingerprint(tmp_path)
    (tmp_path / "sub").chmod(0o777)
    tmp_path.chmod(0o777)
    changes = compare(before, fingerprint(tmp_path))
    assert (changes.changed, changes.added, changes.removed) == (["./", "sub/"], [], [])


def test_a_mount_fingerprint_ignores_modes_and_the_root(tmp_path):
    """A model cache made readable with chmod holds the same files: a rerun must not
    call it changed (the dataset check is the one that minds modes)."""
    from mdivicomtools.runner.containers import mount_fingerprint

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w").write_text("1")
    before = mount_fingerprint(tmp_path)
    (tmp_path / "sub").chmod(0o777)
    tmp_path.chmod(0o777)
    assert mount_fingerprint(tmp_path) == before


def test_fingerprint_description_is_bounded():
    before = {f"f{i:03}": ("f", 1, 1) for i in range(30)}
    changes = compare(before, {})
    assert changes.describe(limit=3) == "removed f000, f001, f002 and 27 more"


def _deep(top, levels: int) -> None:
    """`levels` nested folders under `top` (with a file at the bottom), made by
    descriptors as a plugin can: deeper than a path the kernel takes."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("dd", dir_fd=fd)
        inner = os.open("dd", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


def test_remove_tree_removes_an_output_deeper_than_recursion_or_a_path_reaches(tmp_path):
    """A plugin's output 1500 folders deep made remove_tree fail with RecursionError:
    the failed run ended 'internal error', left its staging and a `running` record,
    and every later run into that --out and `runs clean` ended the same way. 2500
    folders (a path longer than PATH_MAX) could not even be looked at by path."""
    from mdivicomtools.common.safefs import remove_tree

    for levels in (1500, 2500):
        top = tmp_path / f"deep{levels}"
        top.mkdir()
        _deep(top, levels)
        try:
            removal = remove_tree(top)
            assert removal.removed, removal.left[:3]
            assert not top.exists()
        finally:  # pytest's own clean-up of old tmp folders recurses (shutil.rmtree, < 3.12)
            subprocess.run(["rm", "-rf", str(top)], check=True)


def test_remove_tree_never_follows_a_folder_swapped_for_a_symlink(tmp_path, monkeypatch):
    """Between looking at an entry (a folder) and emptying it, someone who may write in
    the tree (another user of a shared output) swaps it for a symlink to the user's
    own folder: the removal went through the link and removed what it leads to."""
    from mdivicomtools.common import safefs

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    top = tmp_path / "staging"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f").write_text("x")
    real_lstat, real_stat = os.lstat, os.stat
    swapped = []

    def swap_after(looked, path, *args, **kwargs):
        result = looked(path, *args, **kwargs)
        if not isinstance(path, int) and os.fsencode(path).endswith(b"sub") and not swapped:
            swapped.append(path)
            os.rename(top / "sub", tmp_path / "moved")
            os.symlink(precious, top / "sub")
        return result

    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: swap_after(real_lstat, p, *a, **k))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: swap_after(real_stat, p, *a, **k))
    safefs.remove_tree(top)
    monkeypatch.undo()
    assert swapped
    assert (precious / "thesis.tex").read_text() == "years of work\n"


def test_remove_tree_opens_up_folders_the_plugin_closed(tmp_path):
    """A plugin's `chmod 000` and read-only folders (Go's module cache) are made
    usable for their owner and removed; run as another user where this is root,
    whose permissions would pass over the modes."""
    from mdivicomtools.common.safefs import remove_tree

    shared = Path(tempfile.mkdtemp(prefix="mdivicom-closed-"))
    shared.chmod(0o777)
    top = shared / "staging"

    def check() -> int:
        for name, mode in (("closed", 0o000), ("readonly", 0o555), ("nosearch", 0o600)):
            folder = top / name / "inner"
            folder.mkdir(parents=True)
            (folder / "f").write_text("x")
            folder.chmod(mode)
            (top / name).chmod(mode)
        removal = remove_tree(top)
        return 0 if removal.removed and not top.exists() else 1

    code = as_another_user(check)
    subprocess.run(["rm", "-rf", str(shared)], check=False)
    assert code == 0


LOCKS_ITS_OUTPUT = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "a.txt").write_text("fine")
    if config.get("lock"):
        secret = pathlib.Path(out_dir, "secret.bin")
        secret.write_bytes(b"x" * 10)
        secret.chmod(0)
        locked = pathlib.Path(out_dir, "locked")
        locked.mkdir()
        (locked / "in.txt").write_text("y")
        locked.chmod(0)
    return {}
"""


def test_outputs_left_mode_000_name_each_path_its_mode_and_the_fix(site, dataset, tmp_path):
    """A tool that leaves a file or folder mode 000: the run failed with
    `InventoryFailed: the output could not be listed; see hook_errors` and a
    PermissionError on one path. It still fails (no sha256 can be taken), but says
    which entries, their modes and what to do; the earlier output stays."""
    site.plugin("locker", run_source=LOCKS_ITS_OUTPUT)
    out = tmp_path / "out"
    run = ("run", "locker", "--dataset", str(dataset), "--out", str(out), "--json")
    first = cli_without_dac(*run, env=site.env())
    assert first.returncode == 0, first.stderr
    done = cli_without_dac(*run, "--overwrite", "--set", "lock=true", env=site.env())
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["error"] == {
        "type": "UnreadableOutput",
        "message": "the plugin left outputs this user may not read, so they cannot be listed "
        "with their sha256: 'locked' (a folder, mode 000), 'secret.bin' (a file, mode 000); "
        "nothing was promoted. Have the plugin (or the tool it runs) leave its outputs "
        "readable (chmod u+r on files, u+rx on folders) and run again",
    }
    assert record["hook_errors"] == [] and record["outputs"] == []
    assert [p.name for p in (out / "locker").iterdir()] == ["a.txt"]  # the first run's
    assert not list(out.glob("_staging/*/locker"))  # the refused output was removed


def test_a_folder_left_listable_but_not_enterable_is_named_as_unreadable(site, dataset, tmp_path):
    """`chmod -R 644 out/` leaves folders whose names can be read but whose entries
    cannot be looked at: the run failed with `InventoryFailed: the output could not
    be listed; see hook_errors` (a PermissionError on one entry), the case that
    UnreadableOutput was made for, in another mode."""
    site.plugin(
        "chmodder",
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    tree = pathlib.Path(out_dir, 'tree')\n"
            "    tree.mkdir()\n"
            "    (tree / 'in.txt').write_text('y')\n"
            "    tree.chmod(0o644)\n"
            "    return {}\n"
        ),
    )
    out = tmp_path / "out"
    done = cli_without_dac(
        "run", "chmodder", "--dataset", str(dataset), "--out", str(out), "--json", env=site.env()
    )
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert record["error"] == {
        "type": "UnreadableOutput",
        "message": "the plugin left outputs this user may not read, so they cannot be listed "
        "with their sha256: 'tree' (a folder, mode 644); nothing was promoted. Have the "
        "plugin (or the tool it runs) leave its outputs readable (chmod u+r on files, u+rx "
        "on folders) and run again",
    }
    assert record["hook_errors"] == [] and record["outputs"] == []
    assert not list(out.glob("_staging/*/chmodder"))  # the refused output was removed
