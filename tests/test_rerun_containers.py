"""`rerun` of container runs on the real Docker Engine and Podman service: the image is pinned.

Each test tags the shared test image under a name of its own, so moving that
tag to another image never disturbs a test running in parallel; the images
and containers it creates are removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from containerkit import container_plugin, run_on
from engines import TEST_IMAGE, engine_cli, need_engine
from mdivicomtools import rerun, run_plugin, verify_out
from mdivicomtools.runner import ValidationFailed

pytestmark = pytest.mark.engines

MARK = (
    "cat /marker > {out_dir}/marker 2>/dev/null || echo original > {out_dir}/marker; "
    "wc -c < {dataset_dir}/a.txt > {out_dir}/size"
)


def engine_run(engine, *args):
    return subprocess.run(
        [*engine_cli(engine), *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


@pytest.fixture
def own_tag(engine):
    """`localhost/mdivicom-repro-<random>:1`, first on the test image; removed afterwards."""
    tag = f"localhost/mdivicom-repro-{uuid.uuid4().hex[:8]}:1"
    engine_run(engine, "tag", TEST_IMAGE, tag)
    made: list[str] = []
    yield tag, made
    for ref in [tag, *made]:
        subprocess.run(
            [*engine_cli(engine), "rmi", ref], capture_output=True, timeout=120, check=False
        )


def move_tag_to_a_new_image(engine, tag, made):
    """Commit a container of the test image with /marker changed, under `tag`."""
    name = f"mdivicom-repro-{uuid.uuid4().hex[:8]}"
    engine_run(
        engine, "run", "--name", name, "--network", "none", TEST_IMAGE, "sh", "-c",
        "echo moved > /marker",
    )  # fmt: skip
    try:
        engine_run(engine, "commit", name, tag)
    finally:
        engine_run(engine, "rm", "-f", name)
    # the id behind the tag, not commit's printed one: once, under two concurrent test
    # runs, Podman's remote commit printed the base image's id
    new_id = engine_run(engine, "image", "inspect", "--format", "{{.Id}}", tag)
    base = engine_run(engine, "image", "inspect", "--format", "{{.Id}}", TEST_IMAGE)
    assert new_id != base, f"committing {name} as {tag} left the tag on the test image"
    made.append(new_id)
    return new_id


def test_rerun_uses_the_pinned_image_after_the_tag_moved(site, dataset, tmp_path, engine, own_tag):
    tag, made = own_tag
    container_plugin(site, "mark", MARK, image=tag)
    out = tmp_path / "out"
    original = run_plugin("mark", dataset=dataset, out=out, backend=engine, hash_dataset=True)
    assert original.status == "succeeded", (out / original.log).read_text()
    assert (out / "mark" / "marker").read_text().strip() == "original"

    new_id = move_tag_to_a_new_image(engine, tag, made)
    assert new_id.removeprefix("sha256:") != original.container.image_id.removeprefix("sha256:")
    # an ordinary run now gets the new image behind the tag ...
    moved = run_plugin("mark", dataset=dataset, out=tmp_path / "plain", backend=engine)
    assert (tmp_path / "plain" / "mark" / "marker").read_text().strip() == "moved"
    assert moved.container.image_id != original.container.image_id

    # ... and the rerun the image the record pinned
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.record.status == "succeeded"
    assert (tmp_path / "again" / "mark" / "marker").read_text().strip() == "original"
    assert report.record.container.image_id == original.container.image_id
    assert report.same_outputs and report.identical == ["marker", "size"]
    assert report.record.rerun_of == original.run_id and report.dataset_matches is True
    [checked] = verify_out(out)
    assert checked.ok


def test_a_rerun_records_the_image_as_the_original_named_it(
    site, dataset, tmp_path, engine, own_tag, monkeypatch
):
    """The rerun pins the image id, but its record and crate name the image by its
    reference: `image` was the id, and the crate read it as name `sha256` (Docker)
    or name `<hex>` (Podman), with the hex digits as a tag."""
    from crates import serve_context
    from mdivicomtools.records.crate import export_crate

    serve_context(monkeypatch)
    tag, _ = own_tag
    container_plugin(site, "mark", MARK, image=tag)
    out = tmp_path / "out"
    original = run_plugin("mark", dataset=dataset, out=out, backend=engine)
    assert original.status == "succeeded" and original.container.image == tag
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.image == original.container.image_id  # what ran: the pinned id
    assert report.record.container.image == tag
    assert report.record.container.image_id == original.container.image_id
    export_crate(tmp_path / "again", "latest", tmp_path / "crate")
    entities = {
        e["@id"]: e
        for e in json.loads((tmp_path / "crate" / "ro-crate-metadata.json").read_text())["@graph"]
    }
    [image] = [e for e in entities.values() if e.get("@type") == "ContainerImage"]
    registry, _, rest = tag.partition("/")
    name, _, version = rest.partition(":")
    assert (image["registry"], image["name"], image["tag"]) == (registry, name, version)
    assert image["sha256"] == original.container.image_id.removeprefix("sha256:")


def test_rerun_refuses_when_the_pinned_image_is_gone(site, dataset, tmp_path, engine, own_tag):
    tag, made = own_tag
    name = f"mdivicom-repro-{uuid.uuid4().hex[:8]}"
    engine_run(engine, "run", "--name", name, "--network", "none", TEST_IMAGE, "true")
    try:
        temporary = engine_run(engine, "commit", name, tag)
    finally:
        engine_run(engine, "rm", "-f", name)
    made.append(temporary)
    container_plugin(site, "mark", MARK, image=tag)
    out = tmp_path / "out"
    original = run_plugin("mark", dataset=dataset, out=out, backend=engine)
    assert original.status == "succeeded"
    engine_run(engine, "rmi", "-f", tag)  # the tag and the only image behind it
    with pytest.raises(ValidationFailed) as caught:
        rerun(out, original.run_id, new_out=tmp_path / "again")
    message = str(caught.value)
    assert "rerun pins the image run" in message and original.container.image_id in message
    assert "by digest, not by tag" in message
    assert not (tmp_path / "again" / "mark").exists()
    result = site.cli("rerun", str(out), original.run_id, "--out", str(tmp_path / "cli"))
    assert result.returncode == 2 and "rerun pins the image" in result.stderr


def test_rerun_of_a_container_run_through_the_cli(site, dataset, tmp_path, engine, own_tag):
    tag, _ = own_tag
    container_plugin(site, "mark", MARK, image=tag)
    out = tmp_path / "out"
    first, original = run_on(site, engine, "mark", dataset, out)
    assert first.returncode == 0, first.stderr
    result = site.cli("rerun", str(out), "latest", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["original"] == original["run_id"]
    assert report["image"] == original["container"]["image_id"]
    assert report["identical"] == ["marker", "size"]


def test_resume_reruns_sessions_whose_image_changed(site, tmp_path, engine, own_tag):
    from mdivicomtools import run_batch

    tag, made = own_tag
    container_plugin(site, "mark", MARK, image=tag)
    data = tmp_path / "data"
    for name in ("ses-01", "ses-02"):
        (data / "sessions" / name).mkdir(parents=True)
        (data / "sessions" / name / "a.txt").write_text(name)
    out = tmp_path / "batch"
    common = {"dataset": data, "out": out, "sessions": "*", "jobs": 1, "backend": engine}
    assert run_batch("mark", **common).status == "succeeded"
    assert run_batch("mark", resume=True, **common).totals == {"skipped": 2}
    move_tag_to_a_new_image(engine, tag, made)
    summary = run_batch("mark", resume=True, **common)
    assert summary.totals == {"succeeded": 2}
    assert all(r.reason.startswith("image changed (") for r in summary.sessions)
    assert (out / "ses-01" / "mark" / "marker").read_text().strip() == "moved"


def test_a_container_run_exports_its_image_digest_to_a_valid_crate(
    site, dataset, tmp_path, engine, monkeypatch
):
    from crates import serve_context, validation_problems
    from mdivicomtools.records.crate import export_crate

    serve_context(monkeypatch)
    container_plugin(site, "mark", MARK, image=TEST_IMAGE)
    out = tmp_path / "out"
    record = run_plugin("mark", dataset=dataset, out=out, backend=engine)
    assert record.status == "succeeded"
    crate = tmp_path / "crate"
    export_crate(out, record.run_id, crate)
    assert validation_problems(crate) == []
    entities = {
        e["@id"]: e for e in json.loads((crate / "ro-crate-metadata.json").read_text())["@graph"]
    }
    action = entities[f"#run/{record.run_id}"]
    image = entities[action["containerImage"]["@id"]]
    assert image["@type"] == "ContainerImage"
    assert image["sha256"] == record.container.image_id.removeprefix("sha256:")
    assert (image["registry"], image["name"], image["tag"]) == (
        "localhost",
        "mdivicom-test",
        "1",
    )


def test_rerun_falls_back_to_the_repo_digest_when_the_image_id_is_gone(site, dataset, tmp_path):
    # Podman gives an imported image a repo digest (Docker does not), so this runs on Podman
    need_engine("podman")
    container_plugin(site, "mark", MARK, image=TEST_IMAGE)
    out = tmp_path / "out"
    original = run_plugin("mark", dataset=dataset, out=out, backend="podman")
    assert original.status == "succeeded"
    [digest, *_] = original.container.repo_digests
    path = out / "_runs" / f"{original.run_id}.json"
    data = json.loads(path.read_text())
    data["container"]["image_id"] = "0" * 64  # as if that image had been removed
    path.write_text(json.dumps(data))
    report = rerun(out, original.run_id, new_out=tmp_path / "again")
    assert report.image == digest
    assert report.record.container.image_id == original.container.image_id
    assert report.same_outputs


#: the memory limit the container sees (cgroup v1 on these machines, else v2) and the model
LIMIT_AND_MODEL = (
    "(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
    "|| cat /sys/fs/cgroup/memory.max) > {out_dir}/limit; cat /models/m > {out_dir}/model"
)


def test_rerun_repeats_the_limits_mounts_and_timeout_of_the_original(
    site, dataset, tmp_path, engine
):
    """A rerun runs under what the record says, whatever the user config says now."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "m").write_text("v1\n")
    container_plugin(
        site, "pose", LIMIT_AND_MODEL, mounts={"models": {"target": "/models", "required": True}}
    )
    out = tmp_path / "out"
    first, original = run_on(
        site, engine, "pose", dataset, out,
        "--memory", "96m", "--mount", f"models={models}", "--timeout", "120", "--stop-grace", "2",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert int((out / "pose" / "limit").read_text()) == 96 * 1024**2
    assert original["timeout_s"] == 120 and original["isolate"] is False

    # the site's defaults change since: another limit, another model folder
    elsewhere = tmp_path / "other-models"
    elsewhere.mkdir()
    (elsewhere / "m").write_text("v2\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[container]\nmemory = "160m"\n[container.mounts]\nmodels = "{elsewhere}"\n')
    result = site.cli("rerun", str(out), "latest", "--json", MDIVICOM_CONFIG_FILE=str(config))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] == ["limit", "model"] and report["mounts_match"] is True
    applied = report["record"]["container"]["applied"]
    assert applied["memory"] == 96 * 1024**2 and applied["stop_grace_s"] == 2
    assert applied["mounts"][0]["source"] == str(models)
    assert report["record"]["timeout_s"] == 120

    # the model folder itself changed: the outputs differ and the report says why
    (models / "m").write_text("v1 retrained\n")
    again = tmp_path / "again"
    changed = site.cli(
        "rerun", str(out), original["run_id"], "--timeout", "60", "--out", str(again)
    )
    assert changed.returncode == 1, changed.stderr
    assert "mounts:     DIFFERENT" in changed.stdout and "differs:    model" in changed.stdout
    [record_path] = (again / "_runs").glob("*.json")
    assert json.loads(record_path.read_text())["timeout_s"] == 60  # rerun's --timeout wins


def test_rerun_goes_where_mdivicom_backend_says_not_to_the_original_engine(
    site, dataset, tmp_path, monkeypatch
):
    """A site where Docker is not allowed sets MDIVICOM_BACKEND=podman; a rerun of a
    record made on Docker ran on Docker all the same. It now goes to Podman, with the
    image still pinned by id: refused while Podman lacks that image, and run once
    `images save` and `images load` carried it over (they keep the id)."""
    need_engine("docker")
    need_engine("podman")
    tag = f"localhost/mdivicom-repro-{uuid.uuid4().hex[:8]}:1"
    name = f"mdivicom-repro-{uuid.uuid4().hex[:8]}"
    engine_run("docker", "run", "--name", name, "--network", "none", TEST_IMAGE, "true")
    try:
        engine_run("docker", "commit", name, tag)  # an image only Docker has
    finally:
        engine_run("docker", "rm", "-f", name)
    try:
        container_plugin(site, "mark", MARK, image=tag)
        out = tmp_path / "out"
        original = run_plugin("mark", dataset=dataset, out=out, backend="docker")
        assert original.status == "succeeded"
        monkeypatch.setenv("MDIVICOM_BACKEND", "podman")
        with pytest.raises(ValidationFailed) as caught:
            rerun(out, original.run_id, new_out=tmp_path / "refused")
        message = str(caught.value)
        assert "is not on podman" in message
        assert "the original ran on docker, and MDIVICOM_BACKEND=podman sends" in message

        tar = tmp_path / "image.tar"
        saved = site.cli("images", "save", tag, "-o", str(tar), "--backend", "docker")
        assert saved.returncode == 0, saved.stderr
        loaded = site.cli("images", "load", str(tar), "--backend", "podman")
        assert loaded.returncode == 0, loaded.stderr
        report = rerun(out, original.run_id, new_out=tmp_path / "again")
        assert report.record.status == "succeeded"
        assert report.record.backend.name == "podman"
        assert report.moved_from_backend == "docker" and report.same_outputs
        assert report.image == original.container.image_id
        cli = site.cli("rerun", str(out), original.run_id, "--out", str(tmp_path / "cli"))
        assert cli.returncode == 0, cli.stderr
        assert "backend:    podman (the original ran on docker; MDIVICOM_BACKEND chose)" in (
            cli.stdout
        )
    finally:
        for engine in ("docker", "podman"):
            subprocess.run(
                [*engine_cli(engine), "rmi", tag], capture_output=True, timeout=120, check=False
            )
