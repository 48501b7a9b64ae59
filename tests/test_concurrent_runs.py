"""Several people and scripts using one results folder at the same time.

Runs of different plugins share a `--out` (and a batch's session folders);
runs of one plugin are kept apart by its lock in `_runs/`. Each test puts two
of them side by side at the moment that used to go wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from mdivicomtools import run_plugin
from mdivicomtools.records.store import load_records, run_roots
from mdivicomtools.records.verify import verify_out
from mdivicomtools.runner import debris
from mdivicomtools.runner.staging import (
    OutputLocked,
    create_staging,
    discard_staging,
    plugin_lock,
    promote,
    roll_back,
)
from otheruser import as_another_user
from pluginsite import MDIVICOM, PluginSite, cli_without_dac

#: writes result.txt (its `tag`), then waits for the `wait_for` file when given
WAITING = """
import pathlib, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    pathlib.Path(out_dir, "result.txt").write_text(config.get("tag", "x") + "\\n")
    wait_for = config.get("wait_for")
    if wait_for:
        pathlib.Path(out_dir, "started").write_text("started")
        deadline = time.monotonic() + 60
        while not pathlib.Path(wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "_runs").glob("*.json"))]


def _start_waiting_run(
    site: PluginSite, plugin: str, dataset: Path, out: Path, trigger: Path
) -> subprocess.Popen[str]:
    """`mdivicom run` of a WAITING plugin, returned once the plugin is running."""
    args = ("run", plugin, "--dataset", str(dataset), "--out", str(out))
    proc = subprocess.Popen(
        [MDIVICOM, *args, "--set", f"tag={plugin}", "--set", f"wait_for={trigger}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=site.env(),
    )
    deadline = time.monotonic() + 60
    while not list(out.glob(f"_staging/*/{plugin}/started")):
        assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
        time.sleep(0.02)
    return proc


def test_runs_clean_never_rewrites_the_record_of_a_run_that_ends_meanwhile(
    site, dataset, tmp_path, monkeypatch
):
    """`runs clean` read a live run's `running` record, then found the plugin's lock
    free because the run had just ended, and wrote the stale record back as
    `abandoned` over the run's `succeeded` one. The run ends here exactly between
    the two steps."""
    site.plugin("live", run_source=WAITING)
    out = tmp_path / "out"
    trigger = tmp_path / "go"
    proc = _start_waiting_run(site, "live", dataset, out, trigger)
    real = debris._record_of

    def read_then_let_the_run_end(run_out_dir, run_id):
        record = real(run_out_dir, run_id)
        if record is not None and record.status == "running" and not trigger.exists():
            trigger.write_text("go")
            proc.communicate(timeout=60)
        return record

    monkeypatch.setattr(debris, "_record_of", read_then_let_the_run_end)
    debris.remove_dead_runs(out, every_record=True)
    assert proc.returncode == 0
    [record] = _records(out)
    assert record["status"] == "succeeded", record["error"]
    assert [o["path"] for o in record["outputs"]] == ["result.txt", "started"]


def test_a_batch_leaves_another_plugins_live_run_in_its_session_alone(site, dataset, tmp_path):
    """After each session the batch looked for tries whose worker was lost: any
    staging folder whose record said `running`, of any plugin. A run of another
    plugin chained onto the session at the same time had its record rewritten
    as the batch plugin's `WorkerLost` and its staging deleted mid-run."""
    site.plugin("batched", run_source=WAITING)
    site.plugin("single", run_source=WAITING)
    out = tmp_path / "out"
    trigger = tmp_path / "go"
    session = dataset / "sessions" / "ses-01"
    proc = _start_waiting_run(site, "single", session, out / "ses-01", trigger)
    batch = site.cli(
        *("run", "batched", "--dataset", str(dataset), "--out", str(out)),
        *("--sessions", "ses-*", "--jobs", "1"),
    )
    trigger.write_text("go")
    _, stderr = proc.communicate(timeout=60)
    assert batch.returncode == 0, batch.stderr
    assert proc.returncode == 0, stderr
    by_plugin = {r["plugin"]["id"]: r for r in _records(out / "ses-01")}
    assert sorted(by_plugin) == ["batched", "single"]
    assert by_plugin["single"]["status"] == "succeeded", by_plugin["single"]["error"]
    assert (out / "ses-01" / "single" / "result.txt").read_text() == "single\n"


def test_a_lock_file_another_users_umask_made_read_only_still_locks():
    """In a group-shared --out, the lock file the first user made (umask 022: 0644)
    could not be opened for writing by the second user, and every run of that
    plugin by anyone else was refused with `cannot write into --out`. flock needs
    only an open file: a read-only one locks as well."""
    # not under pytest's tmp_path, which only its owner may enter
    shared = Path(tempfile.mkdtemp(prefix="mdivicom-shared-"))
    try:
        shared.chmod(0o777)  # as a group-writable folder is to the group
        (shared / "_runs").mkdir()
        (shared / "_runs").chmod(0o777)
        lock = shared / "_runs" / ".p.lock"
        lock.touch()
        lock.chmod(0o444)
        child = os.fork()
        if child == 0:  # pragma: no cover - reported through the exit status
            code = 4
            try:
                if os.getuid() == 0:  # root opens anything: be another user
                    os.setgid(65534)
                    os.setuid(65534)
                with plugin_lock(shared, "p"):
                    code = 3
                    try:  # and it is held: a second run is refused
                        with plugin_lock(shared, "p"):
                            pass
                    except OutputLocked:
                        code = 0
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_runs_export_refuses_a_run_still_in_progress(site, dataset, tmp_path):
    """`runs export OUT` (latest) during a run exported its `running` record: a crate
    saying the run had failed, with an end time and no outputs, exit 0. `latest` is
    the newest succeeded run; the run in progress, named, is refused as such."""
    site.plugin("live", run_source=WAITING)
    out = tmp_path / "out"
    trigger = tmp_path / "go"
    crate = tmp_path / "crate"
    proc = _start_waiting_run(site, "live", dataset, out, trigger)
    try:
        [record] = (out / "_runs").glob("*.json")
        latest = site.cli("runs", "export", str(out), "--ro-crate", str(crate))
        named = site.cli("runs", "export", str(out), record.stem, "--ro-crate", str(crate))
    finally:
        trigger.write_text("go")
        proc.communicate(timeout=60)
    assert latest.returncode == 2, latest.stdout + latest.stderr
    assert latest.stderr.startswith(
        f"Error: no succeeded run recorded in {str(out)!r} (its latest run {record.stem} "
        "has not finished); "
    ), latest.stderr
    assert named.returncode == 2, named.stdout + named.stderr
    [error] = [line for line in named.stderr.splitlines() if line.startswith("Error:")]
    assert error.endswith("is still in progress; export it once it has ended, or name another run")
    assert not crate.exists()
    exported = site.cli("runs", "export", str(out), "--ro-crate", str(crate))
    assert exported.returncode == 0, exported.stderr


def test_a_run_that_ends_meanwhile_does_not_fail_the_next_ones_staging(tmp_path, monkeypatch):
    """A run made `_staging/`, then a run of another plugin ended and removed it as
    empty, and the first run's own folder in it failed: `FileNotFoundError: the
    run could not continue` (about one run in a hundred, five plugins at once)."""
    real_mkdir = Path.mkdir
    raced: list[str] = []

    # Path.mkdir, not os.mkdir: Python 3.10's pathlib holds its own reference to os.mkdir
    def mkdir(self, *args, **kwargs):
        if self.parent.name == "_staging" and not raced:
            raced.append(str(self))
            os.rmdir(self.parent)  # the other run's discard_staging, just then
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    staging = create_staging(tmp_path, "20260101T000000Z_0000abcd", "p")
    assert raced
    assert staging == tmp_path / "_staging" / "20260101T000000Z_0000abcd" / "p"
    assert staging.is_dir()


def test_another_users_private_folders_in_a_shared_out_are_passed_over(site, dataset):
    """A colleague with umask 077 leaves an output folder and a `_staging/` nobody else
    may enter; `runs list`, `verify` and `runs clean` asked each folder whether it
    held `_runs/` and stopped with `internal error (PermissionError ...)`, a run
    of another plugin stopped the same way cleaning up before it started, and
    `--resume` over private session folders too."""
    site.plugin("mine", run_source=WAITING)
    site.plugin("theirs", run_source=WAITING)
    shared = Path(tempfile.mkdtemp(prefix="mdivicom-shared-"))
    try:
        shared.chmod(0o777)
        assert run_plugin("mine", dataset=dataset, out=shared).status == "succeeded"
        assert run_plugin("theirs", dataset=dataset, out=shared).status == "succeeded"
        (shared / "_staging" / "20260101T000000Z_0000abcd").mkdir(parents=True)
        for private in (shared / "theirs", shared / "_staging"):
            private.chmod(0o700 if os.getuid() == 0 else 0o000)

        def check() -> int:
            if [root.session for root in run_roots(shared)] != [None]:
                return 2
            # `--resume` reads each session's records: a private one has none to read
            records, problems = load_records(shared / "theirs")
            if records or problems != [
                f"{shared / 'theirs' / '_runs'}: cannot be read (Permission denied)"
            ]:
                return 5
            [cleaned] = debris.remove_dead_runs(shared, every_record=True)
            if cleaned.done or not str(cleaned).startswith(
                f"could not look into {shared / '_staging'} for what dead runs left"
            ):
                return 3
            # a run that could not make its own staging folder in there ends recorded
            removal = discard_staging(shared, "20260101T000000Z_0000ffff", keep_promotion=True)
            return 4 if removal.removed else 0

        assert as_another_user(check) == 0
    finally:
        for private in (shared / "theirs", shared / "_staging"):
            private.chmod(0o700)
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_a_private_staging_folder_of_another_user_refuses_the_run_before_it_starts(
    site, dataset, tmp_path
):
    """A colleague's umask 077 made `_staging/` theirs alone: the run was started and
    failed making its folder there (`PermissionError`, exit 1), leaving a failed
    record on every try. It is an --out this user cannot write into: exit 74, and
    nothing is recorded."""
    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o777)
    staging = out / "_staging"
    staging.mkdir(mode=0o700)
    (staging / "20260101T000000Z_0000abcd").mkdir()  # their run (empty, anyone may rmdir it)
    os.chown(staging, 65534, 65534)  # nobody's
    try:
        done = cli_without_dac(
            "run", "mine", "--dataset", str(dataset), "--out", str(out), env=site.env()
        )
    finally:
        os.chown(staging, os.getuid(), os.getgid())
    assert done.returncode == 74, done.stdout + done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert error == (
        f"Error: the run was not started: cannot write into '{staging}', which another user "
        "made private; ask its owner to make it group-writable (chmod g+rwx), or to remove "
        "it when empty (everyone sharing --out needs umask 002)"
    )
    assert list((out / "_runs").glob("*.json")) == []


def test_a_private_runs_folder_of_another_user_is_never_read_as_no_runs(site, dataset, tmp_path):
    """A colleague's umask 077 made `_runs/` theirs alone. Path.glob passes over a
    folder it may not read, so `runs list` said `No run records` with exit 0,
    `verify` said there were none (exit 2) and `runs clean` cleaned nothing and
    exited 0. Each now stops on the path this user may not enter (exit 1)."""
    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "shared"
    assert run_plugin("mine", dataset=dataset, out=out).status == "succeeded"
    runs = out / "_runs"
    runs.chmod(0o700)
    os.chown(runs, 65534, 65534)  # nobody's
    try:
        listed = cli_without_dac("runs", "list", str(out), env=site.env())
        verified = cli_without_dac("verify", str(out), env=site.env())
        cleaned = cli_without_dac("runs", "clean", str(out), env=site.env())
    finally:
        os.chown(runs, os.getuid(), os.getgid())
    denied = (
        f"Error: cannot access '{runs}': Permission denied; check its permissions or ask "
        "its owner (run with -v for the traceback)"
    )
    for done in (listed, verified):
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.strip().splitlines()[-1] == denied
    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert (
        f"Error: could not look into {runs} for runs left running (Permission denied); "
        "run `mdivicom runs clean` as its owner"
    ) in cleaned.stderr.splitlines()


def test_a_dead_run_of_another_user_is_not_judged_from_outside_its_private_folder(site, dataset):
    """A colleague's run killed with kill -9 leaves its `_staging/<run_id>/`, private to
    them (0700). `runs clean` by anyone else could not read the promotion marker in
    it and said the folder `holds the previous output of a promotion that did not
    finish, which could not be put back` (it held none), then rewrote the record
    `abandoned`, `its staging folder was removed`, while it was still there."""
    site.plugin("mine", run_source=WAITING)
    shared = Path(tempfile.mkdtemp(prefix="mdivicom-shared-"))
    try:
        shared.chmod(0o777)
        result = run_plugin("mine", dataset=dataset, out=shared)
        record_path = shared / "_runs" / f"{result.run_id}.json"
        data = json.loads(record_path.read_text())
        data["status"] = "running"  # as a runner killed with SIGKILL leaves it
        record_path.write_text(json.dumps(data))
        (shared / "_runs").chmod(0o777)
        folder = shared / "_staging" / result.run_id
        (folder / "mine").mkdir(parents=True)
        (shared / "_staging").chmod(0o777)
        folder.chmod(0o700)
        os.chown(folder, 65533, 65533)  # theirs: neither this user's nor nobody's

        def check() -> int:
            cleaned = debris.remove_dead_runs(shared, every_record=True)
            if [(str(line), line.done) for line in cleaned] != [
                (
                    f"could not look into {folder}, left by a dead run (Permission denied); "
                    "run `mdivicom runs clean` as its owner",
                    False,
                )
            ]:
                return 2
            return 0 if json.loads(record_path.read_text())["status"] == "running" else 3

        assert as_another_user(check) == 0
        assert folder.is_dir()
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_another_users_runs_folder_or_lock_refuses_the_run_naming_it(site, dataset, tmp_path):
    """In a shared --out, a `_runs/` a colleague's umask 022 left 0755 refused the run
    with `cannot write its record ...; free space or fix the folder's permissions`,
    and a lock their umask 077 left 0600 with `cannot write into --out ...; choose
    a writable --out`, though the --out is writable. Each names what is closed,
    whose it is and the fix; nothing is recorded (exit 74)."""
    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "shared"
    assert run_plugin("mine", dataset=dataset, out=out).status == "succeeded"
    runs = out / "_runs"
    lock = runs / ".mine.lock"
    run = ("run", "mine", "--dataset", str(dataset), "--out", str(out), "--overwrite")
    before = sorted(runs.glob("*.json"))
    os.chown(runs, 65534, 65534)  # theirs, 0755
    try:
        closed_runs = cli_without_dac(*run, env=site.env())
    finally:
        os.chown(runs, os.getuid(), os.getgid())
    lock.chmod(0o600)
    os.chown(lock, 65534, 65534)
    try:
        closed_lock = cli_without_dac(*run, env=site.env())
    finally:
        os.chown(lock, os.getuid(), os.getgid())
    fix = "; everyone sharing --out needs umask 002"
    for done, what, owner_fix in (
        (closed_runs, f"write into '{runs}'", "group-writable (chmod g+rwx)"),
        (closed_lock, f"open the lock '{lock}'", "group-readable (chmod g+r)"),
    ):
        assert done.returncode == 74, done.stdout + done.stderr
        assert done.stderr.strip().splitlines()[-1] == (
            f"Error: the run was not started: cannot {what}, which another user's umask "
            f"closed to this user; ask its owner to make it {owner_fix}{fix}"
        )
    assert sorted(runs.glob("*.json")) == before


def test_overwrite_of_another_users_output_folder_is_refused_before_the_run(
    site, dataset, tmp_path
):
    """A folder moves into another only with write access to itself: `--overwrite` of
    an output a colleague's umask 022 (or root) left 0755 ran the plugin to the end
    and then failed with `PromotionError: ... Permission denied` (exit 1). It is
    refused before anything runs (exit 2), naming the folder and the fix."""
    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "shared"
    assert run_plugin("mine", dataset=dataset, out=out).status == "succeeded"
    output = out / "mine"
    os.chown(output, 65534, 65534)  # theirs, 0755
    try:
        done = cli_without_dac(
            *("run", "mine", "--dataset", str(dataset), "--out", str(out), "--overwrite"),
            env=site.env(),
            fowner=False,
        )
    finally:
        os.chown(output, os.getuid(), os.getgid())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"  - '{output}' is another user's folder that this user may not write to, so "
        "--overwrite cannot move it aside; ask its owner to make it group-writable "
        "(chmod -R g+w) or to remove it (everyone sharing --out needs umask 002), or "
        "choose another --out"
    )
    assert len(list((out / "_runs").glob("*.json"))) == 1


def test_a_private_batches_folder_of_another_user_is_never_read_as_no_batches(site, tmp_path):
    """`batches list` and `batches show` read `_batches/` with Path.glob too, which
    passes over a folder it may not read: a colleague's private `_batches/` said
    `No batches under OUT`, exit 0."""
    batches = tmp_path / "shared" / "_batches"
    batches.mkdir(parents=True)
    (batches / "20260101T000000Z_0000abcd.json").write_text("{}")
    batches.chmod(0o700)
    os.chown(batches, 65534, 65534)  # nobody's
    try:
        listed = cli_without_dac("batches", "list", str(batches.parent), env=site.env())
        shown = cli_without_dac("batches", "show", str(batches.parent), "latest", env=site.env())
    finally:
        os.chown(batches, os.getuid(), os.getgid())
    for done in (listed, shown):
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.strip().splitlines()[-1] == (
            f"Error: cannot access '{batches}': Permission denied; check its permissions or "
            "ask its owner (run with -v for the traceback)"
        )


def test_another_users_batches_folder_refuses_the_batch_naming_it(site, dataset, tmp_path):
    """A `_batches/` a colleague's umask 022 left 0755 refused a batch with `cannot
    write into --out ...; choose a writable --out`, though the --out is writable;
    it names the folder, whose umask closed it and the fix, as a run does."""
    site.plugin("mine", run_source=WAITING)
    batches = tmp_path / "shared" / "_batches"
    batches.mkdir(parents=True)
    os.chown(batches, 65534, 65534)  # theirs, 0755
    try:
        done = cli_without_dac(
            *("run", "mine", "--dataset", str(dataset), "--out", str(batches.parent)),
            *("--sessions", "ses-*"),
            env=site.env(),
        )
    finally:
        os.chown(batches, os.getuid(), os.getgid())
    assert done.returncode == 74, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: the batch was not started: cannot write into '{batches}', which another "
        "user's umask closed to this user; ask its owner to make it group-writable "
        "(chmod g+rwx); everyone sharing --out needs umask 002"
    )
    assert not (batches.parent / "ses-01").exists()


def test_undoing_a_dead_runs_promotion_never_takes_a_later_runs_output(tmp_path):
    """A colleague's run killed while it promoted leaves its staging folder private to
    them, so another user's run of the plugin cannot undo it and goes ahead,
    replacing the output. Undoing the dead run's promotion later (its owner's `runs
    clean`) moved that newer output into the dead run's staging, to be deleted with
    it, and put the output from before both runs back: the newer run's `succeeded`
    record then described an output that was gone."""
    out = tmp_path / "out"
    (out / "p").mkdir(parents=True)
    (out / "p" / "result.txt").write_text("old\n")
    dead = "20260101T000000Z_0000dead"
    staging = create_staging(out, dead, "p")
    (staging / "result.txt").write_text("dead\n")
    promote(staging, out / "p")  # and then the runner is killed, before its record
    # the later run replaces the output as a promotion does: its folder made first, the
    # one in place moved aside, its own moved in, the one moved aside removed
    later = tmp_path / "later"
    later.mkdir()
    (later / "result.txt").write_text("later\n")
    os.replace(out / "p", tmp_path / "aside")
    os.replace(later, out / "p")
    subprocess.run(["rm", "-rf", str(tmp_path / "aside")], check=True)
    said = roll_back(out, dead)
    assert (out / "p" / "result.txt").read_text() == "later\n"
    assert said == f"left {out / 'p'} as it is: a later run replaced the output this run promoted"
    assert discard_staging(out, dead).removed
    assert sorted(p.name for p in out.iterdir()) == ["p"]


def test_a_staging_folder_that_is_a_link_never_makes_a_run_remove_what_it_leads_to(
    site, dataset, tmp_path
):
    """`_staging/` is shared and removed when empty, so a colleague sharing --out can
    put a symbolic link there. Every run and `runs clean` took each folder the link
    led to for a dead run's staging (`removed .../_staging/thesis (no record)`)
    and removed it: a user's own folders, wherever the link pointed."""
    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious"
    (precious / "thesis").mkdir(parents=True)
    (precious / "thesis" / "ch1.tex").write_text("years of work\n")
    (out / "_staging").symlink_to(precious)
    ran = site.cli("run", "mine", "--dataset", str(dataset), "--out", str(out))
    assert ran.returncode == 74, ran.stdout + ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == (
        f"Error: the run was not started: '{out / '_staging'}' is not the folder mdivicom "
        f"makes (it is a symbolic link to '{precious}'), and what a run stages there "
        "would not stay in --out; remove it"
    )
    cleaned = site.cli("runs", "clean", str(out))
    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert (
        f"Error: left {out / '_staging'} alone: it is a symbolic link to '{precious}', not a "
        "folder a runner of this user made; remove it as its owner"
    ) in cleaned.stderr.splitlines()
    assert (precious / "thesis" / "ch1.tex").read_text() == "years of work\n"


def test_a_staging_folder_no_runner_of_this_user_made_is_never_rolled_back(site, dataset):
    """A run folder in `_staging/` that others may write to (or a link there) is not one
    a runner of this user made (0700). Taken for a dead run's unfinished promotion
    (`.promoting` naming the plugin, `.previous-<id>/` beside it), `runs clean` or
    the next run moved the user's output into it, removed it with the folder and put
    the planted `.previous-<id>/` in its place under the output's succeeded record."""
    site.plugin("mine", run_source=WAITING)
    shared = Path(tempfile.mkdtemp(prefix="mdivicom-shared-"))
    try:
        result = run_plugin("mine", dataset=dataset, out=shared, config={"tag": "mine"})
        planted = shared / "_staging" / "20260101T000000Z_0000dead"
        (planted / ".previous-mine").mkdir(parents=True)
        (planted / ".previous-mine" / "result.txt").write_text("planted\n")
        (planted / ".promoting").write_text("mine")
        planted.chmod(0o777)  # as a colleague sharing --out leaves it
        elsewhere = shared.parent / (shared.name + "-elsewhere")
        (elsewhere / ".previous-mine").mkdir(parents=True)
        (elsewhere / ".promoting").write_text("mine")
        linked = shared / "_staging" / "20260101T000000Z_0000link"
        linked.symlink_to(elsewhere)
        # a marker naming a path: the lock taken for that "plugin" was made where it led
        pathy = shared / "_staging" / "20260101T000000Z_0000path"
        pathy.mkdir()
        (pathy / ".promoting").write_text("/../../../../../../../../" + str(elsewhere) + "/x")
        pathy.chmod(0o777)
        cleaned = debris.remove_dead_runs(shared, every_record=True)
        assert [(str(line), line.done) for line in cleaned] == [
            (
                f"left {planted} alone: others may write into it (mode 777), not a folder "
                "a runner of this user made; remove it as its owner",
                False,
            ),
            (
                f"left {linked} alone: it is a symbolic link to '{elsewhere}', not a folder "
                "a runner of this user made; remove it as its owner",
                False,
            ),
            (
                f"left {pathy} alone: others may write into it (mode 777), not a folder "
                "a runner of this user made; remove it as its owner",
                False,
            ),
        ]
        assert not (elsewhere / "x.lock").exists()
        assert (shared / "mine" / "result.txt").read_text() == "mine\n"
        assert (elsewhere / ".previous-mine").is_dir()
        verified = subprocess.run(
            [MDIVICOM, "verify", str(shared), result.run_id],
            capture_output=True,
            text=True,
            env=site.env(),
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # nor does verify name the planted folder's "run" as replacing the output
        (shared / "mine" / "result.txt").write_text("edited\n")
        [report] = verify_out(shared)
        assert report.modified == ["result.txt"] and report.replaced_by_unfinished is None
    finally:
        subprocess.run(["rm", "-rf", str(shared), str(shared) + "-elsewhere"], check=False)


def test_a_record_is_never_written_through_a_symlink_put_at_its_temporary_name(
    site, dataset, tmp_path
):
    """`_runs/` of a shared --out is writable by the group. Once a run's id showed there,
    a colleague's symlink at `_runs/.<run_id>.json.tmp` made the run's final record
    overwrite the file it led to (a thesis, as JSON), and the record became a link to
    it. Likewise a dead run's log the supervisor appends to, and the plugin's lock,
    which was made wherever its link led."""
    from mdivicomtools.common.jsonio import write_atomic
    from mdivicomtools.model.run import ErrorInfo

    precious = tmp_path / "thesis.tex"
    precious.write_text("years of work\n")
    record = tmp_path / "_runs" / "20260101T000000Z_0000abcd.json"
    record.parent.mkdir()
    record.with_name(f".{record.name}.tmp").symlink_to(precious)
    write_atomic(record, b"{}\n")
    assert record.read_bytes() == b"{}\n" and not record.is_symlink()
    assert precious.read_text() == "years of work\n"

    site.plugin("mine", run_source=WAITING)
    out = tmp_path / "out"
    result = run_plugin("mine", dataset=dataset, out=out)
    record_path = out / "_runs" / f"{result.run_id}.json"
    data = json.loads(record_path.read_text())
    data["status"] = "running"
    record_path.write_text(json.dumps(data))
    log = out / "_runs" / f"{result.run_id}.log"
    log.unlink()
    log.symlink_to(precious)
    staging = out / "_staging" / result.run_id
    staging.mkdir(parents=True)
    error = ErrorInfo(type="RunnerCrashed", message="the runner died from SIGKILL")
    assert debris.finish_dead_run(record_path, staging, "failed", error) is not None
    assert precious.read_text() == "years of work\n"

    made = tmp_path / "made-by-the-lock"
    (out / "_runs" / ".mine.lock").unlink()
    (out / "_runs" / ".mine.lock").symlink_to(made)
    ran = site.cli("run", "mine", "--dataset", str(dataset), "--out", str(out), "--overwrite")
    assert ran.returncode == 74, ran.stdout + ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == (
        f"Error: the run was not started: the lock '{out / '_runs' / '.mine.lock'}' is a "
        f"symbolic link to '{made}', not the file mdivicom makes; remove it"
    )
    assert not made.exists()
