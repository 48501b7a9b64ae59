"""`mdivicom plugins check` on a conforming plugin and on deliberately broken ones."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from containerkit import container_plugin
from engines import ENGINES, TEST_IMAGE, need_engine
from mdivicomtools.authoring.check import check_plugin

GOOD = """
import json, pathlib
from mdivicomtools.resultbundle import write_resultbundle
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    if dry_run:
        return {"would": "count"}
    wavs = sorted(str(p) for p in pathlib.Path(dataset_dir).rglob("*.wav"))
    pathlib.Path(out_dir, "wavs.json").write_text(json.dumps(wavs))
    pathlib.Path(work_dir, "scratch").write_text("ok")
    pathlib.Path(out_dir, "provenance.json").write_text(json.dumps({"tool": "good"}))
    write_resultbundle(out_dir, resultbundle_type="lab.wavs.v1")
"""

BROKEN = {
    "bad-signature": (
        "def run(dataset_dir):\n    pass\n",
        "callable",
        "run() must accept (dataset_dir, out_dir, config) positionally",
    ),
    "no-kwargs": (
        "def run(dataset_dir, out_dir, config):\n    pass\n",
        "callable",
        "run() must accept the keyword argument(s) work_dir, dry_run",
    ),
    "async-run": (
        "async def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n    pass\n",
        "callable",
        "is an async function; the runner calls run() and takes what it returns",
    ),
    "generator-run": (
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n    yield {}\n",
        "callable",
        "is a generator function (it has a `yield`); the runner calls run() and takes what",
    ),
    "writes-outside": (
        "import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path('stray.txt').write_text('x')\n"
        "    pathlib.Path(out_dir, '..', '..', '..', 'beside.txt').write_text('x')\n"
        "    pathlib.Path(out_dir, '..', '..', '..', '..', 'elsewhere.txt').write_text('x')\n",
        "writes only to out_dir",
        "wrote elsewhere.txt, out/beside.txt, stray.txt",
    ),
    # out_dir's parent is the run's staging folder, removed after the run: the
    # check passed a plugin whose shared file every real run lost
    "writes-beside-out-dir": (
        "import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path(out_dir).parent.joinpath('shared.csv').write_text('x')\n",
        "writes only to out_dir",
        "the plugin wrote beside its out_dir, into the run's staging folder, which is "
        "removed after the run, so it is not kept: shared.csv",
    ),
    "modifies-dataset": (
        "import pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    if not dry_run:\n"
        "        pathlib.Path(dataset_dir, 'ses-01_session.yaml').write_text('changed: 1')\n",
        "run",
        "DatasetModified",
    ),
    "invalid-sidecar": (
        "import json, pathlib\n"
        "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
        "    pathlib.Path(out_dir, 'resultbundle.json').write_text(json.dumps({'files': []}))\n",
        "resultbundle",
        "'resultbundle_type' is a required property",
    ),
}


@pytest.fixture(autouse=True)
def _temporary_files_in_tmp_path(tmp_path, monkeypatch):
    """The logs a failed check keeps (and its sandbox) go to this test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def statuses(checks):
    return {check.name: check.status for check in checks}


def test_a_conforming_plugin_passes_every_check(site):
    site.plugin("good", run_source=GOOD)
    checks = check_plugin("good")
    assert statuses(checks) == {
        "meta": "pass",
        "api_version": "pass",
        "callable": "pass",
        "registration": "pass",
        "dry run": "pass",
        "run": "pass",
        "dataset untouched": "pass",
        "writes only to out_dir": "pass",
        "provenance.json": "pass",
        "resultbundle": "pass",
    }
    # what it passes on: a subprocess writing elsewhere is not seen, and the line
    # said "nothing written outside out_dir" for one that had
    (writes,) = [c for c in checks if c.name == "writes only to out_dir"]
    assert writes.detail.endswith("(a subprocess or C code writing elsewhere is not seen)")


SITE_RULES = """
import pathlib, shutil
from mdivicomtools import hookimpl

@hookimpl
def mdivicom_validate_run(request):
    if not (pathlib.Path(request.dataset_dir) / "consent.json").exists():
        return ["no consent.json: this lab refuses the dataset"]

@hookimpl
def mdivicom_finalize_outputs(request, outcome):
    shutil.copytree(outcome.staging_dir, pathlib.Path({archive!r}) / request.run_id)

@hookimpl
def mdivicom_capture_provenance():
    return {{"lab": "interaction-lab"}}
"""


def test_a_sites_hooks_do_not_decide_a_plugins_check(site, tmp_path):
    """A lab's consent rule failed every plugin's check (the sample dataset has no
    consent file), and its archive hook copied the sandbox's output into the lab's
    archive and failed `writes only to out_dir`. The check leaves the site's
    validation, provenance and finalisation hooks out, and says so."""
    archive = tmp_path / "archive"
    site.plugin("good", run_source=GOOD)
    site.module("h_siterules", SITE_RULES.format(archive=str(archive)))
    site.distribution("site-rules", {"siterules": "h_siterules"}, group="mdivicomtools.hooks")
    checks = check_plugin("good")
    assert {c.status for c in checks} <= {"pass", "skip"}, checks
    [skipped] = [c for c in checks if c.status == "skip"]
    assert (skipped.name, skipped.detail) == (
        "site hooks",
        "not used by the check: siterules (this site's validation, provenance and "
        "finalisation hooks; `mdivicom run` uses them)",
    )
    assert not archive.exists()
    # a real run still obeys the site
    refused = site.cli("run", "good", "--dataset", str(tmp_path), "--out", str(tmp_path / "o"))
    assert refused.returncode == 2
    assert "no consent.json: this lab refuses the dataset" in refused.stderr


def test_a_user_configs_hash_dataset_is_not_a_write_of_the_plugins(site, tmp_path, monkeypatch):
    """With `hash_dataset = true` in the user config the runner wrote its digest cache
    (`~/.cache/mdivicomtools`) during the watched run, and every plugin failed
    `writes only to out_dir: wrote .../.cache/mdivicomtools`. The check is about
    the plugin: its runs do not hash the dataset."""
    config = tmp_path / "config.toml"
    config.write_text("hash_dataset = true\n")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MDIVICOM_DIGEST_CACHE", raising=False)
    site.plugin("good", run_source=GOOD)
    checks = check_plugin("good")
    (writes,) = [c for c in checks if c.name == "writes only to out_dir"]
    assert writes.status == "pass", writes.detail
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugins_fail_the_right_check(site, case):
    source, failing, detail = BROKEN[case]
    site.plugin(case, run_source=source)
    checks = {check.name: check for check in check_plugin(case)}
    assert checks[failing].status == "fail", checks
    assert detail in checks[failing].detail


def test_a_broken_registration_fails_meta(site):
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "lab"}})
    (check,) = check_plugin("broken")
    assert (check.name, check.status) == ("meta", "fail")
    assert "meta.api_version is missing" in check.detail


def test_what_discovery_and_the_run_noticed_is_a_warning(site):
    """A misnamed entry point, a missing publisher and the run record's warnings used to
    pass unmentioned: the author saw every line PASS."""
    site.plugin(
        "chatty",
        ep_name="chatty-tool",
        publisher=None,
        run_source=(
            "import pathlib\n"
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    return {'warnings': ['2 of 3 speakers below threshold'], 'at': pathlib.Path()}\n"
        ),
    )
    checks = check_plugin("chatty")
    warned = [c.detail for c in checks if c.status == "warn"]
    assert not [c for c in checks if c.status == "fail"], checks
    assert any(
        "the entry point is named 'chatty-tool', not after meta.id 'chatty'" in w for w in warned
    ), warned
    assert any("meta.publisher is not set" in w for w in warned), warned
    assert (
        "the plugin's return value was not kept: result.at is a PosixPath, not a JSON value; "
        "convert it before returning: float(x), int(x) or x.tolist() for "
        "numpy values, str(path), a list for a tuple or set"
    ) in warned
    site.plugin(
        "kept",
        run_source=(
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    return {'warnings': ['2 of 3 speakers below threshold']}\n"
        ),
    )
    warned = [(c.name, c.detail) for c in check_plugin("kept") if c.status == "warn"]
    assert ("run warning", "2 of 3 speakers below threshold") in warned
    # an invalid sidecar is said once, on its resultbundle line
    site.plugin("invalid-sidecar", run_source=BROKEN["invalid-sidecar"][0])
    checks = check_plugin("invalid-sidecar")
    assert not [c for c in checks if c.name == "run warning"], checks


def test_a_failed_run_keeps_its_log_outside_the_sandbox(site):
    """The traceback was only in the sandbox's run log, deleted with it: the author got
    the exception's message and no line number."""
    site.plugin(
        "raiser",
        run_source=(
            "def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):\n"
            "    speakers = []\n"
            "    return {'share': 1 / len(speakers)}\n"
        ),
    )
    checks = {c.name: c for c in check_plugin("raiser")}
    for name in ("dry run", "run"):
        assert checks[name].status == "fail"
        detail = checks[name].detail
        assert "ZeroDivisionError: division by zero; its log (output and traceback): " in detail
        kept = Path(detail.rpartition(": ")[2])
        try:
            assert "line 3, in run" in kept.read_text()
            assert "1 / len(speakers)" in kept.read_text()
        finally:
            kept.unlink()


def test_a_failed_container_run_keeps_its_output_and_a_slip_is_named(site):
    need_engine("docker")
    container_plugin(site, "slip", "ls {dataset} > {outdir}/l.txt")
    checks = check_plugin("slip", backend="docker")
    notes = [c.detail for c in checks if c.name == "note"]
    assert any("has {outdir}, which is no placeholder" in n for n in notes), checks
    (run,) = [c for c in checks if c.name == "run"]
    assert run.status == "fail" and "ContainerFailed" in run.detail
    kept = Path(run.detail.rpartition(": ")[2])
    try:
        assert "{outdir}/l.txt" in kept.read_text()
    finally:
        kept.unlink()


def test_cli_lines_and_exit_codes(site):
    site.plugin("good", run_source=GOOD)
    site.plugin("bad-signature", run_source=BROKEN["bad-signature"][0])
    ok = site.cli("plugins", "check", "good")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[0].startswith("PASS  meta: lab/good 1.0.0")
    bad = site.cli("plugins", "check", "bad-signature", "--json")
    assert bad.returncode == 1
    assert {"name": "callable", "status": "fail"}.items() <= json.loads(bad.stdout)[-1].items()
    unknown = site.cli("plugins", "check", "nope")
    assert unknown.returncode == 2


ABSENT_IMAGE = "localhost/mdivicom-never-built:1"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pull", ["never", "missing"])
def test_the_image_check_asks_the_engine_and_names_its_pull(site, engine, pull, tmp_path):
    """A dry run that did not raise is no proof the image is there (it may have failed
    pulling it): `image` passes only when the chosen engine has it."""
    need_engine(engine)
    container_plugin(site, "absent", "true", image=ABSENT_IMAGE, pull=pull)
    done = site.cli(
        "plugins", "check", "absent", "--backend", engine, "--json", TMPDIR=str(tmp_path)
    )
    image = next(c for c in json.loads(done.stdout) if c["name"] == "image")
    assert image["status"] == ("fail" if pull == "never" else "warn"), image
    assert f"{ABSENT_IMAGE} is not on {engine}" in image["detail"]
    assert f"`{engine} pull {ABSENT_IMAGE}`" in image["detail"]
    assert done.returncode == 1  # the dry run cannot run it either

    container_plugin(site, "present", "true")
    done = site.cli("plugins", "check", "present", "--backend", engine, "--json")
    image = next(c for c in json.loads(done.stdout) if c["name"] == "image")
    assert image["status"] == "pass", image
    assert image["detail"].startswith(f"{TEST_IMAGE} is present on {engine} (")


SITE_BACKEND = """
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability


class SiteBox:
    name = "site-box"
    kinds = frozenset({"container"})

    def availability(self):
        return Availability(available=True, engine="site-box 1")

    def preflight(self, request):
        image = request.spec.container.image
        return [] if image == "localhost/on-site:1" else [f"{image} is not in the site cache"]

    def execute(self, request, outcome, log):
        if not request.dry_run:
            (outcome.staging_dir / "ran.txt").write_text("ran")
        outcome.status = "succeeded"


@hookimpl
def mdivicom_execution_backends():
    return [SiteBox()]
"""


def test_a_site_container_backend_is_checked_through_its_own_preflight(site):
    """`plugins check --backend <a site's container backend>` stopped at a FAIL line
    ("does not manage images through mdivicomtools") before the dry run and the run,
    so a site whose Docker is not allowed could not check any container plugin."""
    site.module("p_check_box_hooks", SITE_BACKEND)
    site.distribution("site-box", {"site-box": "p_check_box_hooks"}, group="mdivicomtools.hooks")
    container_plugin(site, "cached", "true", image="localhost/on-site:1")
    checks = {c.name: c for c in check_plugin("cached", backend="site-box")}
    assert checks["image"].status == "warn"
    assert checks["image"].detail == (
        "localhost/on-site:1 not checked here: backend 'site-box' does not report images to "
        "mdivicomtools; its own pre-run checks (preflight) ran with the dry run"
    )
    assert checks["dry run"].status == "pass" and checks["run"].status == "pass"
    assert "backend" not in checks

    container_plugin(site, "uncached", "true", image="localhost/elsewhere:1")
    checks = {c.name: c for c in check_plugin("uncached", backend="site-box")}
    assert checks["validation"].status == "fail"
    assert checks["validation"].detail == "localhost/elsewhere:1 is not in the site cache"
