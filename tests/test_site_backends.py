"""A site's own container backend (not docker/podman-style): what the runner asks of
it beyond the required members, through its optional methods."""

from __future__ import annotations

from pathlib import Path

from mdivicomtools import run_batch
from pluginsite import container_manifest

SITE_BOX = """
import os, pathlib
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability
from mdivicomtools.model.run import ContainerInfo

IDS = pathlib.Path(os.environ["SITE_BOX_IDS"])


class SiteBox:
    name = "site-box"
    kinds = frozenset({"container"})

    def availability(self):
        return Availability(available=True, engine="site-box 1")

    def image_id(self, ref):
        return IDS.read_text().strip()

    def execute(self, request, outcome, log):
        (outcome.staging_dir / "ran.txt").write_text("ran")
        outcome.container = ContainerInfo(
            image=request.spec.container.image, image_id=self.image_id(None)
        )
        outcome.status = "succeeded"


@hookimpl
def mdivicom_execution_backends():
    return [SiteBox()]
"""


def _site_box_with_boxed_plugin(site, tmp_path: Path, monkeypatch, module: str) -> Path:
    """The site backend `site-box` installed as hook module `module`, and a container
    plugin `boxed` for it; returns the file that holds the image id the box reports."""
    ids = tmp_path / "ids"
    ids.write_text("sha256:" + "1" * 64)
    monkeypatch.setenv("SITE_BOX_IDS", str(ids))
    site.module(module, SITE_BOX)
    site.distribution("site-box", {"site-box": module}, group="mdivicomtools.hooks")
    site.manifest(
        "boxed.json",
        container_manifest("boxed", {"image": "localhost/boxed:1", "command": ["true"]}),
    )
    return ids


def test_resume_asks_a_site_backend_for_its_image_id(site, tmp_path, monkeypatch):
    """`--resume` promises to run again the sessions whose image its tag now names
    differently; with a site's backend it asked only docker/podman-style engines and
    skipped every session after the site rebuilt the image under the same tag."""
    ids = _site_box_with_boxed_plugin(site, tmp_path, monkeypatch, "p_resume_box_hooks")
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
        (data / "sessions" / name / "a.txt").write_text(name)
    common = {
        "dataset": data,
        "out": tmp_path / "batch",
        "sessions": "*",
        "jobs": 1,
        "backend": "site-box",
    }
    assert run_batch("boxed", **common).status == "succeeded"
    assert run_batch("boxed", resume=True, **common).totals == {"skipped": 2}
    ids.write_text("sha256:" + "2" * 64)
    summary = run_batch("boxed", resume=True, **common)
    assert summary.totals == {"succeeded": 2}
    assert all(r.reason.startswith("image changed (") for r in summary.sessions)


PINNED_BOX = """
import os, pathlib
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability
from mdivicomtools.model.run import ContainerInfo

CACHE = pathlib.Path(os.environ["SITE_BOX_CACHE"])


class PinnedBox:
    name = "pinned-box"
    kinds = frozenset({"container"})

    def availability(self):
        return Availability(available=True, engine="pinned-box 1")

    def preflight(self, request):
        image = request.spec.container.image
        if image == "localhost/pinned:1" or image in CACHE.read_text().split():
            return []
        return [f"{image} is not in the site cache"]

    def execute(self, request, outcome, log):
        (outcome.staging_dir / "ran.txt").write_text(request.spec.container.image)
        outcome.container = ContainerInfo(
            image=request.image_name or request.spec.container.image,
            image_id="sha256:" + "a" * 64,
            repo_digests=["localhost/pinned@sha256:" + "b" * 64],
        )
        outcome.status = "succeeded"


@hookimpl
def mdivicom_execution_backends():
    return [PinnedBox()]
"""


def test_rerun_tries_a_site_backends_repo_digest_through_its_preflight(
    site, dataset, tmp_path, monkeypatch
):
    """When the pinned image id was not there, rerun went on to pull the recorded
    repo digest through mdivicomtools' engine and stopped with "backend ... does not
    manage images through mdivicomtools", though the site backend could run it."""
    from mdivicomtools import rerun, run_plugin

    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("SITE_BOX_CACHE", str(cache))
    site.module("p_pinned_box_hooks", PINNED_BOX)
    site.distribution(
        "pinned-box", {"pinned-box": "p_pinned_box_hooks"}, group="mdivicomtools.hooks"
    )
    site.manifest(
        "pinned.json",
        container_manifest("pinned", {"image": "localhost/pinned:1", "command": ["true"]}),
    )
    out = tmp_path / "out"
    original = run_plugin("pinned", dataset=dataset, out=out, backend="pinned-box")
    assert original.status == "succeeded"
    digest = "localhost/pinned@sha256:" + "b" * 64
    cache.write_text(digest)  # the site has the image by digest only
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.record.status == "succeeded"
    assert (tmp_path / "again" / "pinned" / "ran.txt").read_text() == digest


def test_rerun_names_a_site_backend_that_left_the_container_settings_out(
    site, dataset, tmp_path, monkeypatch
):
    """A site's container backend that fills in ContainerInfo as the docs listed it
    (image, image_id, ...) left `applied` out, and `rerun` said the limits and mounts
    were not in the record because of `an older release`: the reader looked for an
    old mdivicomtools, not at the backend."""
    from mdivicomtools import rerun, run_plugin

    _site_box_with_boxed_plugin(site, tmp_path, monkeypatch, "p_applied_box_hooks")
    out = tmp_path / "out"
    original = run_plugin("boxed", dataset=dataset, out=out, backend="site-box")
    assert original.status == "succeeded" and original.container.applied is None
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.record.status == "succeeded"
    assert report.unrecorded == [
        "container limits and mounts: not recorded by the site-box backend (it left "
        "outcome.container.applied out); the rerun ran under those the manifest and the "
        "user config give now"
    ]


QUIET_BOX = """
from mdivicomtools import hookimpl
from mdivicomtools.execution.base import Availability


class Quiet:
    kinds = frozenset({"container"})

    def __init__(self, name, reason):
        self.name, self.reason = name, reason

    def availability(self):
        return Availability(available=False, reason=self.reason)

    def execute(self, request, outcome, log):
        raise AssertionError("never run")


@hookimpl
def mdivicom_execution_backends():
    return [Quiet("no-reason", None), Quiet("no-fix", "apptainer is not on PATH")]
"""


def test_backends_list_prints_no_none_for_what_a_backend_left_out(site, tmp_path):
    """`Availability(available=False, reason="...")` without a fix printed
    `... (fix: None)`, and one without a reason `None (fix: None)`, also in the
    refusal of `--backend`."""
    site.module("p_quiet_box_hooks", QUIET_BOX)
    site.distribution("quiet-box", {"quiet-box": "p_quiet_box_hooks"}, group="mdivicomtools.hooks")
    listed = site.cli("backends", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert rows["no-fix"].endswith("no         apptainer is not on PATH")
    assert rows["no-reason"].endswith(
        "its availability() said unavailable without a reason (fix: the hook module "
        "quiet-box should say why in Availability.reason)"
    )
    assert "None" not in listed.stdout
    site.manifest(
        "quiet.json",
        container_manifest("quiet", {"image": "localhost/quiet:1", "command": ["true"]}),
    )
    (tmp_path / "data").mkdir()
    refused = site.cli(
        "run", "quiet", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
        "--backend", "no-reason",
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "Error: backend 'no-reason' is not available: its availability() said unavailable "
        "without a reason; the hook module quiet-box should say why in Availability.reason;"
    )
