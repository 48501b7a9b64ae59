"""Faults in what a plugin leaves in its output: special files, symlinks, odd names.

Each test: the exit code, the record's status and error, the earlier output
intact, no staging left, no process left.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest
from faultkit import (
    assert_contained,
    assert_no_processes_left,
    assert_no_staging,
    faulty_run,
    hostile_plugin,
    last_record,
    run_cli,
)

from pluginsite import cli_without_dac


def test_fifo_resultbundle_fails_the_run_instead_of_hanging_it(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "fifo_bundle", dataset, out)
    assert_contained(
        out,
        plugin,
        done,
        1,
        "failed",
        "UnsafeOutput",
        "resultbundle.json (a fifo, not a regular file)",
    )
    assert_no_processes_left()


def test_bundles_validate_does_not_block_on_a_fifo(hsite, tmp_path):
    os.mkfifo(tmp_path / "resultbundle.json")
    done = run_cli(hsite, "bundles", "validate", str(tmp_path), timeout=60)
    assert done.returncode == 1
    assert "is a fifo, not a regular file; it was not read" in done.stdout


def test_symlink_to_a_host_file_is_never_read(hsite, dataset, tmp_path, monkeypatch):
    secret = tmp_path / "host-secret.txt"
    secret.write_text('{"resultbundle_type": "TOP-SECRET-CONTENT"}')
    monkeypatch.setenv("HOSTILE_SECRET_FILE", str(secret))
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "symlink_host_file", dataset, out)
    record = assert_contained(
        out,
        plugin,
        done,
        1,
        "failed",
        "UnsafeOutput",
        "resultbundle.json (a symlink to an absolute path)",
    )
    text = (out / "_runs" / f"{record['run_id']}.json").read_text()
    assert "TOP-SECRET" not in text + done.stdout + done.stderr


def test_symlink_to_dev_zero_is_refused_not_read(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "symlink_dev_zero", dataset, out)
    assert_contained(out, plugin, done, 1, "failed", "UnsafeOutput", "resultbundle.json")


def test_device_nodes_setuid_files_and_escaping_symlinks_are_never_promoted(
    hsite, dataset, tmp_path
):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "special_files", dataset, out)
    record = assert_contained(
        out,
        plugin,
        done,
        1,
        "failed",
        "UnsafeOutput",
        "disk (a block device, not a regular file)",
        "suid (a file with the setuid or setgid bit)",
        "up (a symlink that leaves the output folder)",
    )
    assert record["outputs"] == []
    assert not any(stat.S_ISBLK(p.lstat().st_mode) for p in out.rglob("*"))


def test_symlinks_are_checked_from_their_place_in_the_tree_not_from_staging(
    hsite, dataset, tmp_path
):
    """`relink -> ../../<run_id>/<id>/r` resolves inside `_staging/<run_id>/<id>/`,
    and outside `<out>/<id>/` once promoted: refused, as every way out."""
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "symlink_out_after_promotion", dataset, out)
    record = assert_contained(
        out,
        plugin,
        done,
        1,
        "failed",
        "UnsafeOutput",
        "relink (a symlink that leaves the output folder)",
        "chain (a symlink that leaves the output folder)",
    )
    assert "here (" not in record["error"]["message"]  # a link to the folder itself stays in
    assert not (out / plugin / "relink").is_symlink()


def test_non_utf8_output_names_are_recorded_escaped(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "non_utf8_output", dataset, out)
    assert done.returncode == 0, done.stderr
    record = last_record(out)
    assert record["status"] == "succeeded"
    assert record["outputs"] == [
        {
            "path": "\\xfe\\xff.bin",
            "size": 1,
            "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
            "type": "file",
            "escaped": True,
        }
    ]
    # the escaped form names the real file
    assert os.path.exists(os.path.join(os.fsencode(out / plugin), b"\xfe\xff.bin"))
    assert_no_staging(out)


def test_a_non_utf8_name_added_to_the_dataset_is_reported_and_recorded(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = faulty_run(hsite, "non_utf8_into_dataset", dataset, out)
    assert_contained(out, plugin, done, 1, "failed", "DatasetModified", "added bad-\\xff")


def test_a_too_deep_return_value_is_a_warning_not_a_failed_run(hsite, dataset, tmp_path):
    out = tmp_path / "out"
    _, done = faulty_run(hsite, "deep_return", dataset, out)
    assert done.returncode == 0, done.stderr
    record = last_record(out)
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record["result"] is None
    assert any("nested deeper than" in w for w in record["warnings"])
    assert_no_staging(out)


def test_records_are_json_even_for_surrogates(tmp_path):
    """The last resort of every record, batch summary and --json document (`pretty`):
    any string that is not UTF-8 is escaped, never a crash."""
    from mdivicomtools.common.jsonio import pretty

    assert json.loads(pretty({"a\udcff": ["x\udcfe\\"]})) == {"a\\xff": ["x\\xfe\\\\"]}
    assert json.loads(pretty("plain")) == "plain"


def _run_without_dac(site, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_without_dac(*args, env=site.env())


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop DAC caps")
@pytest.mark.parametrize(
    ("config", "code", "status"),
    [((), 0, "succeeded"), (("fail=true",), 1, "failed"), (("locked=true",), 1, "failed")],
)
def test_read_only_folders_left_by_the_plugin_do_not_keep_its_staging(
    hsite, dataset, tmp_path, config, code, status
):
    out = tmp_path / "out"
    plugin = hostile_plugin(hsite, "read_only_leftovers")
    base = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    first = _run_without_dac(hsite, *base)  # its output holds a read-only folder
    assert first.returncode == 0, first.stderr
    sets = [arg for pair in config for arg in ("--set", pair)]
    # the previous output (a read-only folder in it) is set aside in staging: it goes too
    done = _run_without_dac(hsite, *base, "--overwrite", *sets)
    assert done.returncode == code, done.stderr
    found = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    assert sorted(r["status"] for r in found) == sorted(["succeeded", status])
    if "locked=true" in config:  # an output that cannot be read is not promoted
        assert any((r.get("error") or {}).get("type") == "UnreadableOutput" for r in found)
    assert_no_staging(out)
    assert "cleaned:" not in done.stderr  # the first run left nothing behind
    assert (out / plugin / "ro" / "kept.txt").read_text() == "kept\n"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop DAC caps")
def test_runs_clean_removes_read_only_debris_and_says_what_it_could_not(hsite, tmp_path):
    out = tmp_path / "out"
    cache = out / "_staging" / "20240101T000000Z-dead" / "p" / "cache"
    (cache / "mod").mkdir(parents=True)
    (cache / "mod" / "go.mod").write_text("module x\n")
    (out / "_runs").mkdir()
    for path in [cache / "mod" / "go.mod", cache / "mod", cache]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    cleaned = _run_without_dac(hsite, "runs", "clean", str(out))
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed " in cleaned.stdout and "(no record)" in cleaned.stdout
    assert_no_staging(out)

    # a file nobody may remove (immutable): named as left, never reported removed
    stuck = out / "_staging" / "20240101T000000Z-stuck" / "p" / "f"
    stuck.parent.mkdir(parents=True)
    stuck.write_text("x\n")
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        cleaned = run_cli(hsite, "runs", "clean", str(out))
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert cleaned.returncode == 1, cleaned.stderr
    assert "removed" not in cleaned.stdout
    assert "0 item(s) cleaned" in cleaned.stderr
    assert f"Error: not all of {stuck.parent.parent} (no record): could not remove {stuck}: " in (
        cleaned.stderr
    )
    assert stuck.exists()
