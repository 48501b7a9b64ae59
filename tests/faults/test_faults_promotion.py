"""Runners killed while they promote.

A run with --overwrite replaces `<out>/<id>/` only when its record says
`succeeded`. A runner killed between moving the old output aside and writing
that record (the OOM killer, `kill -9`, a node going down) used to leave the
new output in place under a `failed` or `abandoned` record, or, killed between
the two renames of the promotion, no output at all: the cleanup then deleted
the old output with the staging folder. Each test kills the runner at one of
those moments with SIGKILL, which nothing can catch.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import (
    assert_earlier_intact,
    good_earlier_run,
    hostile_plugin,
    records,
    run_cli,
    small_file_system,
)

from pluginsite import MDIVICOM, PluginSite

#: writes result.txt: its `tag`
TAGGED = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "result.txt").write_text(config.get("tag", "x") + "\\n")
"""

#: a provenance hook runs after promotion and before the final record: the OOM killer
#: choosing the runner then is this hook killing its own process
KILLER = """
import os, signal
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_capture_provenance(outcome):
    if os.environ.get("KILL_IN_PROVENANCE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
"""

#: `mdivicom` killed by SIGKILL right after promotion moved the old output aside,
#: before the new one is in place
KILLED_MID_PROMOTION = """
import os, signal, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    real(src, dst, *args, **kwargs)
    if os.path.basename(os.fsdecode(dst)).startswith(".previous-"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from mdivicomtools.cli import main
sys.argv[0] = "mdivicom"
main()
"""


#: `mdivicom` killed by SIGKILL while it wrote the promotion marker: the file is there,
#: empty (however it is written: in place or aside and renamed)
KILLED_WRITING_THE_MARKER = """
import os, pathlib, signal, sys
import mdivicomtools.runner.staging as staging

def dies(path, *args, **kwargs):
    pathlib.Path(path).open("w").close()
    os.kill(os.getpid(), signal.SIGKILL)

real_write_text = pathlib.Path.write_text
def write_text(self, *args, **kwargs):
    if self.name == ".promoting":
        dies(self)
    return real_write_text(self, *args, **kwargs)
pathlib.Path.write_text = write_text
real_write_atomic = getattr(staging, "write_atomic", None)
def write_atomic(path, data):
    if pathlib.Path(path).name == ".promoting":
        dies(path)
    return real_write_atomic(path, data)
staging.write_atomic = write_atomic
from mdivicomtools.cli import main
sys.argv[0] = "mdivicom"
main()
"""


def _tagged(site: PluginSite, plugin_id: str = "tagged") -> str:
    site.plugin(plugin_id, run_source=TAGGED)
    return plugin_id


def _killer(site: PluginSite) -> None:
    site.module("killer_hook", KILLER)
    site.distribution("killer-hook", {"killer": "killer_hook"}, group="mdivicomtools.hooks")


def _run(site: PluginSite, plugin: str, dataset: Path, out: Path, tag: str, *extra: str):
    return run_cli(
        site, "run", plugin, "--dataset", str(dataset), "--out", str(out), "--set", f"tag={tag}",
        *extra,
    )  # fmt: skip


def _of_tag(out: Path, tag: str) -> dict:
    [record] = [r for r in records(out) if r["config"].get("tag") == tag]
    return record


def _assert_old_output_and_verified(site: PluginSite, out: Path, plugin: str) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["_runs", plugin]  # no _staging left
    assert (out / plugin / "result.txt").read_text() == "old\n"
    verified = run_cli(site, "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("supervised", [True, False])
def test_a_runner_killed_after_promotion_before_its_record_keeps_the_earlier_output(
    site, dataset, tmp_path, supervised
):
    """The supervisor recorded the run `failed` (RunnerCrashed) and said the output was
    unchanged, while the new output stood in place; unsupervised, `runs clean` marked
    it `abandoned` and kept the new output. `verify` then failed the earlier run."""
    plugin = _tagged(site)
    _killer(site)
    out = tmp_path / "out"
    assert _run(site, plugin, dataset, out, "old").returncode == 0
    env = {"KILL_IN_PROVENANCE": "1"}
    if not supervised:
        env["MDIVICOM_SUPERVISOR"] = "0"
    args = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    killed = subprocess.run(
        [MDIVICOM, *args, "--set", "tag=new", "--overwrite"],
        capture_output=True,
        text=True,
        env=site.env(**env),
        timeout=90,
        check=False,
    )
    if supervised:
        assert killed.returncode == 1, killed.stderr
        assert _of_tag(out, "new")["error"]["type"] == "RunnerCrashed"
    else:
        assert killed.returncode == -signal.SIGKILL
        cleaned = run_cli(site, "runs", "clean", str(out))
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"put back the previous output {out / plugin}" in cleaned.stdout
        assert _of_tag(out, "new")["status"] == "abandoned"
    assert _of_tag(out, "old")["status"] == "succeeded"
    _assert_old_output_and_verified(site, out, plugin)


def test_verify_before_the_clean_up_says_which_run_was_replacing_the_output(
    site, dataset, tmp_path
):
    """Between a runner killed after promotion and `runs clean`, the new output is in
    place: `verify` said only `DIFFERS`, `output modified`, which reads as damage,
    while the recorded output waited in the dead run's staging folder."""
    plugin = _tagged(site)
    _killer(site)
    out = tmp_path / "out"
    assert _run(site, plugin, dataset, out, "old").returncode == 0
    args = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    killed = subprocess.run(
        [MDIVICOM, *args, "--set", "tag=new", "--overwrite"],
        capture_output=True,
        text=True,
        env=site.env(KILL_IN_PROVENANCE="1", MDIVICOM_SUPERVISOR="0"),
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    dead = _of_tag(out, "new")["run_id"]
    verified = run_cli(site, "verify", str(out))
    assert verified.returncode == 1  # the outputs are not as recorded, still
    lines = verified.stdout.splitlines()
    assert lines[0].endswith(": DIFFERS")
    assert lines[1] == (
        f"  run {dead} was replacing these outputs and has not recorded its end (its runner "
        "was killed, or it is still running): the recorded outputs wait in "
        f"{out / '_staging' / dead}; `mdivicom runs clean {out}` puts them back once that "
        "run is dead"
    )
    as_json = json.loads(run_cli(site, "verify", str(out), "--json").stdout)
    assert [report["replaced_by_unfinished"] for report in as_json] == [dead]
    assert run_cli(site, "runs", "clean", str(out)).returncode == 0
    _assert_old_output_and_verified(site, out, plugin)


def test_a_first_run_killed_after_promotion_leaves_no_output_behind(site, dataset, tmp_path):
    """No earlier output: the promoted one belongs to a run that did not succeed."""
    plugin = _tagged(site)
    _killer(site)
    out = tmp_path / "out"
    killed = subprocess.run(
        [MDIVICOM, "run", plugin, "--dataset", str(dataset), "--out", str(out)],
        capture_output=True,
        text=True,
        env=site.env(KILL_IN_PROVENANCE="1", MDIVICOM_SUPERVISOR="0"),
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert run_cli(site, "runs", "clean", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["_runs"]
    # and the next run works without --overwrite: nothing of the dead run's is left
    assert _run(site, plugin, dataset, out, "next").returncode == 0


@pytest.mark.parametrize("supervised", [True, False])
def test_a_runner_killed_mid_promotion_loses_no_output(site, dataset, tmp_path, supervised):
    """Killed between the two renames, the old output was inside the dead run's staging
    folder and `<out>/<id>/` was gone; the supervisor, the next run and `runs clean`
    all deleted that staging folder, and with it the only copy of the old output."""
    plugin = _tagged(site)
    out = tmp_path / "out"
    assert _run(site, plugin, dataset, out, "old").returncode == 0
    env = site.env() if supervised else site.env(MDIVICOM_SUPERVISOR="0")
    args = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_PROMOTION, *args, "--set", "tag=new", "--overwrite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )
    assert killed.returncode == (1 if supervised else -signal.SIGKILL), killed.stderr
    if not supervised:
        assert not (out / plugin).exists()  # the moment the runner died
        # the next run puts the old output back first, and so refuses without --overwrite
        refused = _run(site, plugin, dataset, out, "next")
        assert refused.returncode == 2, refused.stderr
        assert "put back the previous output" in refused.stderr
    _assert_old_output_and_verified(site, out, plugin)
    assert _run(site, plugin, dataset, out, "next", "--overwrite").returncode == 0
    assert (out / plugin / "result.txt").read_text() == "next\n"


def test_a_batch_worker_killed_after_promotion_keeps_the_sessions_earlier_output(
    site, dataset, tmp_path
):
    """The batch records a lost worker's try (`WorkerLost`) and removed its staging
    folder, with the session's previous output in it when the worker had died
    while it promoted."""
    plugin = _tagged(site)
    _killer(site)
    out = tmp_path / "out"
    batch = ("run", plugin, "--dataset", str(dataset), "--out", str(out), "--sessions", "ses-*")
    assert run_cli(site, *batch, "--set", "tag=old").returncode == 0
    killed = subprocess.run(
        [MDIVICOM, *batch, "--set", "tag=new", "--resume"],
        capture_output=True,
        text=True,
        env=site.env(KILL_IN_PROVENANCE="1"),
        timeout=90,
        check=False,
    )
    assert killed.returncode == 1, killed.stderr
    session = out / "ses-01"
    assert _of_tag(session, "new")["error"]["type"] == "WorkerLost"
    _assert_old_output_and_verified(site, session, plugin)


def test_a_runner_killed_while_it_marks_its_promotion_is_cleaned(site, dataset, tmp_path):
    """An empty marker (the runner died writing it) stopped `runs clean` for good
    (`does not name a plugin output ('')`, exit 1): no rename had begun, so there
    is nothing to undo."""
    plugin = _tagged(site)
    out = tmp_path / "out"
    assert _run(site, plugin, dataset, out, "old").returncode == 0
    args = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITING_THE_MARKER, *args, "--set", "tag=new", "--overwrite"],
        capture_output=True,
        text=True,
        env=site.env(MDIVICOM_SUPERVISOR="0"),
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    cleaned = run_cli(site, "runs", "clean", str(out))
    assert cleaned.returncode == 0, cleaned.stderr
    _assert_old_output_and_verified(site, out, plugin)


def test_a_previous_output_that_cannot_be_removed_is_named_after_the_record(
    site, dataset, tmp_path
):
    """The previous output is removed only after the record is written: what cannot
    be removed of it (an immutable file) is named on stderr then, and by `runs
    clean` until it is writable, instead of silently left in `_staging/`."""
    plugin = _tagged(site)
    out = tmp_path / "out"
    assert _run(site, plugin, dataset, out, "old").returncode == 0
    stuck = out / plugin / "result.txt"
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        done = _run(site, plugin, dataset, out, "new", "--overwrite")
    finally:
        for left in out.glob(f"_staging/*/.previous-{plugin}/result.txt"):
            subprocess.run(["chattr", "-i", str(left)], check=True)
    assert done.returncode == 0, done.stderr
    assert (out / plugin / "result.txt").read_text() == "new\n"
    [warning] = [line for line in done.stderr.splitlines() if "warning:" in line]
    assert f".previous-{plugin}/result.txt: Operation not permitted" in warning
    assert warning.endswith("`mdivicom runs clean` removes it once it is writable")
    assert run_cli(site, "runs", "clean", str(out)).returncode == 0
    assert not (out / "_staging").exists()


@pytest.mark.parametrize("layout", ["staging", "linked-staging", "output"])
def test_a_mount_point_under_out_is_refused_before_the_run(hsite, dataset, tmp_path, layout):
    """Promotion is a rename, which cannot cross file systems: a tmpfs on `_staging/`
    (or linked there, or a mount point as `<out>/<id>/`) failed the run at its end."""
    plugin = hostile_plugin(hsite, "naps")
    out = tmp_path / "out"
    good_earlier_run(hsite, plugin, dataset, out)
    named = out / (plugin if layout == "output" else "_staging")
    if layout == "output":
        (out / plugin).rename(tmp_path / "kept")
    mount_point = tmp_path / "elsewhere" if layout == "linked-staging" else named
    with small_file_system(mount_point):
        if layout == "linked-staging":
            named.symlink_to(mount_point)
        if layout == "output":
            shutil.copy(tmp_path / "kept" / "result.txt", out / plugin / "result.txt")
        done = run_cli(
            hsite,
            *("run", plugin, "--dataset", str(dataset), "--out", str(out), "--overwrite"),
            *("--set", "good=true"),
        )
        assert done.returncode == 2, done.stderr
        assert (
            f"'{named}' is on another file system than --out '{out}' (a mount point, or a "
            "link to one?): outputs move into place by rename" in done.stderr
        )
        assert_earlier_intact(out, plugin)
        assert len(records(out)) == 1  # the earlier run's: nothing was started
