"""A named mount's fingerprint: the same files give the same value wherever they lie."""

from __future__ import annotations

import os
import shutil

from mdivicomtools.runner.containers import mount_fingerprint


def cache(root):
    (root / "pose" / "v2").mkdir(parents=True)
    (root / "pose" / "v2" / "weights.bin").write_bytes(b"w" * 100)
    (root / "index.json").write_text("{}")
    return root


def test_a_copy_with_its_times_and_a_chmod_keep_the_fingerprint(tmp_path):
    # copied with its times (cp -a, rsync -a, a restore) the files get new inodes and
    # change times: the same model, so a rerun must not call it changed
    original = cache(tmp_path / "models")
    before = mount_fingerprint(original)
    copy = tmp_path / "elsewhere" / "models"
    shutil.copytree(original, copy, copy_function=shutil.copy2)
    assert mount_fingerprint(copy) == before
    os.chmod(original / "index.json", 0o444)
    assert mount_fingerprint(original) == before


def test_a_rewritten_touched_added_or_removed_file_changes_it(tmp_path):
    models = cache(tmp_path / "models")
    seen = {mount_fingerprint(models)}
    weights = models / "pose" / "v2" / "weights.bin"
    weights.write_bytes(b"v" * 101)
    seen.add(mount_fingerprint(models))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    seen.add(mount_fingerprint(models))
    (models / "pose" / "v3").mkdir()
    seen.add(mount_fingerprint(models))
    (models / "index.json").unlink()
    seen.add(mount_fingerprint(models))
    assert len(seen) == 5


def test_a_single_file_mount(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 10)
    before = mount_fingerprint(weights)
    shutil.copy2(weights, tmp_path / "copy.bin")
    (tmp_path / "other").mkdir()
    shutil.copy2(weights, tmp_path / "other" / "weights.bin")
    assert mount_fingerprint(tmp_path / "other" / "weights.bin") == before
    weights.write_bytes(b"v" * 10)
    assert mount_fingerprint(weights) != before
