"""A lab upgrades: run roots written by earlier releases, used with this one.

`tests/old_runroots/<commit>/` was written by that commit of this repository
(`tests/old_runroots/make.sh`, with the plugins of `tests/old_runroots/labkit`):
6bd6dc0 (25 Nov, before running records and dataset fingerprints) and 1761381
(27 Nov, dataset manifests named by run id). Each holds `out/` (two runs of
`copy`, one of the container plugin checksum-dataset on Docker, a failed run,
an interrupted run and a run killed with SIGKILL), `batch/` (a batch of
`copy` and an interrupted batch of `slow` over two sessions) and `study/`, the
dataset. Their folders are written `{root}`; `old_root` puts the copy's back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

OLD = Path(__file__).parent / "old_runroots"
COMMITS = ["6bd6dc0", "1761381"]


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=COMMITS)
def old_root(request, site, tmp_path) -> Path:
    """A copy of one commit's run roots, and the lab's plugins installed as they were."""
    root = tmp_path / "lab"
    shutil.copytree(OLD / request.param, root, symlinks=True)
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes()
            if b"{root}" in text:
                path.write_bytes(text.replace(b"{root}", str(root).encode()))
    _restore_recorded_mtimes(root)
    shutil.copytree(OLD / "labkit" / "src" / "labkit", site.root / "labkit")
    site.distribution("labkit", {name: f"labkit:{name}" for name in ("copy", "failer", "slow")})
    return root


def _restore_recorded_mtimes(root: Path) -> None:
    """Give the study's files the modification times the old runs saw.

    git keeps no mtimes: in a clone, each file has the time it was checked out, and
    a record's dataset fingerprint (path, size, mtime) no longer matches, as if the
    lab had changed its data. The releases that fingerprint list each file's mtime
    in their dataset manifests; those are put back."""
    for record_path in root.glob("**/_runs/*.json"):
        record = json.loads(record_path.read_text())
        manifest = (record.get("dataset") or {}).get("manifest")
        if not manifest or not record.get("dataset_dir"):
            continue
        listed = json.loads((record_path.parent.parent / manifest).read_text())
        for rel, _size, mtime_ns, *_ in listed["files"]:
            path = Path(record["dataset_dir"]) / rel
            os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def clean_errors(result) -> None:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def table(result) -> list[list[str]]:
    return [line.split() for line in result.stdout.splitlines()[1:]]


def test_reading_commands_read_everything_and_change_nothing(site, old_root):
    before = digests(old_root)
    out, batch = old_root / "out", old_root / "batch"
    listed = site.cli("runs", "list", str(out))
    clean_errors(listed)
    statuses = [(row[1], row[2]) for row in table(listed)]
    assert statuses[:5] == [
        ("succeeded", "lab/copy"),
        ("succeeded", "mdivicom/checksum-dataset"),
        ("failed", "lab/failer"),
        ("succeeded", "lab/copy"),
        ("interrupted", "lab/slow"),
    ]
    # the killed run: the older release wrote no record before the end, the newer
    # one a `running` record whose runner is gone
    assert statuses[5:] == ([] if _early(old_root) else [("abandoned", "lab/slow")])
    failed = site.cli("runs", "list", str(out), "--status", "failed", "--json")
    assert [r["plugin"] for r in json.loads(failed.stdout)] == ["lab/failer"]
    for row in table(listed):
        shown = site.cli("runs", "show", str(out), row[0])
        clean_errors(shown)
        assert shown.returncode == 0 and f"run_id:         {row[0]}" in shown.stdout
    verified = site.cli("verify", str(out), "--all")
    clean_errors(verified)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.count(": ok\n") == 2  # copy and checksum-dataset
    sessions = site.cli("runs", "list", str(batch), "--plugin", "slow")
    assert [(r[0], r[2]) for r in table(sessions)] == [
        ("ses-01", "succeeded"),
        ("ses-02", "interrupted"),
    ]
    assert site.cli("verify", str(batch), "--all").returncode == 0
    batches = site.cli("batches", "list", str(batch))
    assert [(r[1], r[3]) for r in table(batches)] == [
        ("succeeded", "lab/copy"),
        ("interrupted", "lab/slow"),
    ]
    shown = site.cli("batches", "show", str(batch), "latest")
    clean_errors(shown)
    assert "ses-02   interrupted" in shown.stdout
    valid = site.cli("bundles", "validate", str(out / "copy"), str(out / "checksum-dataset"))
    assert valid.returncode == 0 and valid.stderr == "2 sidecar(s), 0 invalid\n"
    crate = site.cli("runs", "export", str(out), "--ro-crate", str(old_root.parent / "crate"))
    clean_errors(crate)
    assert (
        crate.returncode == 0 and (old_root.parent / "crate" / "ro-crate-metadata.json").is_file()
    )
    assert digests(old_root) == before


def _early(root: Path) -> bool:
    """Whether the copy is of 6bd6dc0: no dataset manifests, and its killed run left no
    record (1761381 wrote a `running` record at the start of every run)."""
    return not (root / "out" / "_runs" / "datasets").is_dir()


def test_runs_clean_removes_the_killed_runs_debris_and_rewrites_no_other_record(site, old_root):
    out = old_root / "out"
    before = digests(old_root)
    [staging] = (out / "_staging").iterdir()
    cleaned = site.cli("runs", "clean", str(out))
    clean_errors(cleaned)
    assert cleaned.returncode == 0
    assert f"removed {out / '_staging' / staging.name}" in cleaned.stdout
    after = digests(old_root)
    gone = set(before) - set(after)
    assert f"out/_staging/{staging.name}/slow/started.txt" in gone
    # 6bd6dc0's killed isolated run left its child's result file in _runs/
    assert gone - {f"out/_staging/{staging.name}/slow/started.txt"} <= {
        f"out/_runs/.{staging.name}.result.json"
    }
    changed = {path for path in after if before[path] != after[path]}
    record = f"out/_runs/{staging.name}.json"
    assert changed == ({record} if record in before else set())
    if changed:  # 1761381's `running` record of the killed run, marked abandoned
        assert json.loads((old_root / record).read_text())["status"] == "abandoned"
    # dataset manifests named by run id (1761381) are kept: their records name them
    assert {p for p in before if "/datasets/" in p} <= set(after)


def test_runs_show_of_the_killed_run_names_what_it_left(site, old_root):
    out = old_root / "out"
    [killed] = [p.name for p in (out / "_staging").iterdir()]
    for asked in (killed, killed[:18]):  # its id, or a start of it
        shown = site.cli("runs", "show", str(out), asked)
        clean_errors(shown)
        if _early(old_root):  # no record, its log only: it said `no run '<id>'`
            log = out / "_runs" / f"{killed}.log"
            assert shown.returncode == 2
            assert shown.stderr.startswith(
                f"Error: run {killed} under {str(out)!r} left only its log {str(log)!r}: it "
                "ended before its record was written (a run of a release from before "
                "`running` records, killed; or its record was removed); read the log; "
                f"`mdivicom runs clean {out}` removes its staging folder if one is left."
            )
        else:
            assert shown.returncode == 0 and "abandoned (recorded running" in shown.stdout


def test_resume_of_an_old_interrupted_batch(site, old_root):
    batch = old_root / "batch"
    old_summaries = digests(batch / "_batches")
    resumed = site.cli(
        "run", "slow", "--dataset", str(old_root / "study"), "--out", str(batch),
        "--sessions", "ses-*", "--jobs", "1", "--set", "seconds=3", "--resume",
    )  # fmt: skip
    clean_errors(resumed)
    assert resumed.returncode == 0, resumed.stderr
    rows = {r[0]: r for r in table(resumed) if r and r[0].startswith("ses-")}
    assert rows["ses-02"][1] == "succeeded" and "last run was interrupted" in resumed.stdout
    if _early(old_root):  # no dataset fingerprint in the record: run again, saying why
        assert rows["ses-01"][1] == "succeeded"
        assert "input not recorded by the last run (an older record)" in resumed.stdout
    else:
        assert rows["ses-01"][1] == "skipped"
    after = digests(batch / "_batches")
    assert {k: after[k] for k in old_summaries} == old_summaries and len(after) == 3


def test_a_new_run_into_an_old_output_and_a_plugin_reading_an_old_bundle(site, old_root):
    out = old_root / "out"
    old_records = digests(out / "_runs")
    [killed] = [p.name for p in (out / "_staging").iterdir()]
    old_copy = json.loads(site.cli("runs", "list", str(out), "--plugin", "copy", "--last", "1",
                                   "--json").stdout)[0]["run_id"]  # fmt: skip
    dataset = str(old_root / "study" / "sessions" / "ses-01")
    refused = site.cli("run", "copy", "--dataset", dataset, "--out", str(out))
    assert refused.returncode == 2
    assert f"already exists (from run {old_copy}); pass --overwrite" in refused.stderr
    replaced = site.cli("run", "copy", "--dataset", dataset, "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "copy" / "a.txt").read_text() == "SES-01 NOTES\n"
    # of the old records, only the killed run's debris changed, as `runs clean` does it
    after = digests(out / "_runs")
    changed = {k for k in old_records if after.get(k) != old_records[k]}
    assert changed <= {f"{killed}.json", f".{killed}.result.json"}
    # the next plugin reads the bundle the old release's run wrote, in the batch
    chained = site.cli(
        "run", "copy", "--dataset", str(old_root / "batch" / "ses-01" / "copy"),
        "--out", str(old_root / "chain"), "--json",
    )  # fmt: skip
    assert chained.returncode == 0, chained.stderr
    [bundle] = json.loads(chained.stdout)["input_bundles"]
    assert bundle["type"] == "lab.upper.v1" and bundle["producer"] == "lab/copy"
    assert re.fullmatch(r"\d{8}T\d{6}Z_[0-9a-f]{8}", bundle["producer_run_id"])


def test_a_script_after_the_first_releases_docs_passes_its_hooks(site, dataset, tmp_path):
    """docs/extending.md of 6bd6dc0: `from mdivicomtools.hooks import load_hooks`, which
    stopped on an ImportError once the module moved to `mdivicomtools.hooks.manager`."""
    from mdivicomtools import hookimpl, run_plugin
    from mdivicomtools.hooks import manager

    with pytest.warns(DeprecationWarning, match=r"is mdivicomtools\.hooks\.manager\.load_hooks"):
        from mdivicomtools.hooks import load_hooks
    assert load_hooks is manager.load_hooks

    class Audit:
        @hookimpl
        def mdivicom_capture_provenance(self, outcome):
            return {"audited": True, "status": outcome.status}

    site.plugin("hello")
    record = run_plugin(
        "hello",
        dataset=dataset,
        out=tmp_path / "results",
        hooks=load_hooks(extra=[("audit", Audit())]),
    )
    assert record.extensions["audit"] == {"audited": True, "status": "succeeded"}


def test_rerun_of_an_old_run_names_what_the_old_record_does_not_say(site, old_root):
    out = old_root / "out"
    latest = site.cli("runs", "list", str(out), "--plugin", "copy", "--last", "1", "--json")
    again = site.cli("rerun", str(out), json.loads(latest.stdout)[0]["run_id"])
    clean_errors(again)
    assert again.returncode == 0, again.stdout
    assert re.search(r"identical: +1 file\(s\)", again.stdout)
    assert re.search(r"same data: +resultbundle.json \(only its run stamps differ\)", again.stdout)
    if _early(old_root):
        assert re.search(r"not recorded: +dataset: not in the record", again.stdout)
    else:
        assert re.search(r"dataset: +same as the original", again.stdout)
