"""What a container plugin's manifest cannot open up, on the real Docker Engine and Podman.

The dataset is mounted read-only. These tests check that a manifest cannot
undo that (a capability that remounts it, a named mount over it, an
environment entry that replaces a runner variable), and that a change to the
dataset made some other way during a container run still fails the run, as it
does for a python plugin.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from containerkit import container_plugin, plugin_containers, run_on
from engines import TEST_IMAGE, engine_cli

pytestmark = pytest.mark.engines

#: what a container given SYS_ADMIN could do before: make the dataset writable and write
REMOUNT = (
    "mount -o remount,rw,bind /mdivicom/dataset && echo changed > /mdivicom/dataset/a.txt; "
    "echo ran > {out_dir}/ran"
)


@pytest.mark.parametrize("capability", ["SYS_ADMIN", "cap_dac_read_search", "ALL"])
def test_a_capability_that_defeats_the_sandbox_is_refused_before_anything_runs(
    site, dataset, tmp_path, engine, capability
):
    container_plugin(site, "remount", REMOUNT, capabilities=[capability])
    out = tmp_path / "out"
    result, record = run_on(site, engine, "remount", dataset, out)
    assert result.returncode == 2, result.stderr
    assert record["error"]["type"] == "PluginBroken"
    assert f"container.capabilities: {capability!r} is refused" in record["error"]["message"]
    assert (dataset / "a.txt").read_text() == "one\ntwo\n"
    assert not (out / "remount").exists()
    assert plugin_containers(engine, "lab/remount") == []
    listed = json.loads(site.cli("plugins", "list", "--json").stdout)
    [item] = [i for i in listed if i["ref"] == "lab/remount"]
    assert item["status"] == "broken" and "container.capabilities" in item["error"]


def test_a_dataset_changed_through_another_path_fails_the_run(site, dataset, tmp_path, engine):
    # the dataset mount is read-only, but the same file is reachable through a
    # hard link in the read-write work folder: the write lands in the dataset
    work = tmp_path / "work"
    work.mkdir()
    os.link(dataset / "a.txt", work / "a.txt")
    container_plugin(site, "linked", "echo more >> /mdivicom/work/a.txt; echo ok > {out_dir}/ok")
    out = tmp_path / "out"
    result, record = run_on(site, engine, "linked", dataset, out, "--work", str(work))
    assert result.returncode == 1, result.stderr
    assert record["status"] == "failed"
    assert record["error"] == {
        "type": "DatasetModified",
        "message": "the plugin modified the dataset, which is read-only: changed a.txt",
    }
    assert not (out / "linked").exists()
    assert plugin_containers(engine, "lab/linked") == []


def test_a_container_that_reads_the_whole_dataset_leaves_it_unchanged(
    site, dataset, tmp_path, engine
):
    container_plugin(
        site,
        "reader",
        "ls -laR /mdivicom/dataset > /dev/null && "
        "find /mdivicom/dataset -type f -exec cat {} + > {out_dir}/all",
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "reader", dataset, out)
    assert result.returncode == 0, result.stderr
    assert record["status"] == "succeeded" and record.get("error") is None
    assert sorted((out / "reader" / "all").read_text().split()) == ["one", "three", "two"]


@pytest.mark.parametrize(
    "target", ["//mdivicom/dataset/sessions", "//mdivicom/dataset", "/./tmp", "/.", "//"]
)
def test_a_named_mount_over_a_runner_path_is_refused_before_anything_runs(
    site, dataset, tmp_path, engine, target
):
    models = tmp_path / "models"
    models.mkdir()
    container_plugin(
        site, "shadow", "ls /mdivicom/dataset > {out_dir}/seen", mounts={"m": {"target": target}}
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "shadow", dataset, out, "--mount", f"m={models}")
    assert result.returncode == 2, result.stderr
    assert record["error"]["type"] == "PluginBroken"
    assert f"container.mounts.m.target {target!r}" in record["error"]["message"]
    assert plugin_containers(engine, "lab/shadow") == []


def test_a_named_mount_target_is_used_and_recorded_normalised(site, dataset, tmp_path, engine):
    models = tmp_path / "models"
    models.mkdir()
    (models / "w").write_text("weights\n")
    container_plugin(
        site, "pose", "cat /models/w > {out_dir}/w", mounts={"models": {"target": "//models/./"}}
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "pose", dataset, out, "--mount", f"models={models}")
    assert result.returncode == 0, result.stderr
    assert (out / "pose" / "w").read_text() == "weights\n"
    assert record["container"]["applied"]["mounts"][0]["target"] == "/models"


def test_the_runner_variables_win_over_the_manifest_env(site, dataset, tmp_path, engine):
    container_plugin(
        site,
        "envy",
        "env > {out_dir}/env",
        env={
            "HOME": "/etc",
            "TMPDIR": "/tmp",
            "MDIVICOM_OUT_DIR": "/tmp/evil",
            "MDIVICOM_RUN_ID": "fake",
            "LAB": "x=y",
        },
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "envy", dataset, out)
    assert result.returncode == 0, result.stderr
    lines = (out / "envy" / "env").read_text().splitlines()
    seen: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition("=")
        seen.setdefault(name, []).append(value)
    assert seen["HOME"] == ["/mdivicom/work"]
    assert seen["TMPDIR"] == ["/mdivicom/work/.tmp"]
    assert seen["MDIVICOM_OUT_DIR"] == ["/mdivicom/out"]
    assert seen["MDIVICOM_RUN_ID"] == [record["run_id"]]
    assert seen["LAB"] == ["x=y"]
    # the author is told: the manifest's values of those names are never used
    check = site.cli("plugins", "check", "envy", "--backend", engine, "--json")
    [env_check] = [c for c in json.loads(check.stdout) if c["name"] == "env"]
    assert env_check["status"] == "warn", env_check
    assert env_check["detail"].startswith(
        "container.env sets HOME, MDIVICOM_OUT_DIR, MDIVICOM_RUN_ID, TMPDIR, which the runner "
        "sets itself"
    ), env_check


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOME=/etc": "x"}, "container.env: name 'HOME=/etc' is not"),
        ({"": "x"}, "container.env: name '' is not"),
        ({"LAB": "a\x00b"}, "container.env.LAB: the value contains a NUL byte"),
    ],
)
def test_a_bad_manifest_env_is_refused_before_anything_runs(
    site, dataset, tmp_path, engine, env, message
):
    container_plugin(site, "envy", "env > {out_dir}/env", env=env)
    out = tmp_path / "out"
    result, record = run_on(site, engine, "envy", dataset, out)
    assert result.returncode == 2, result.stderr
    assert record["error"]["type"] == "PluginBroken" and message in record["error"]["message"]
    assert plugin_containers(engine, "lab/envy") == []
    listed = json.loads(site.cli("plugins", "list", "--json").stdout)
    [item] = [i for i in listed if i["ref"] == "lab/envy"]
    assert item["status"] == "broken" and message in item["error"]


@pytest.fixture
def volume_image(engine):
    """The test image with a VOLUME, made offline by committing a container of it."""
    cli = engine_cli(engine)
    name = f"localhost/mdivicom-test-volume-{os.getpid()}:1"
    made = subprocess.run([*cli, "create", TEST_IMAGE, "true"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    container = made.stdout.strip()
    try:
        committed = subprocess.run(
            [*cli, "commit", "--change", 'VOLUME ["/data"]', container, name],
            capture_output=True,
            text=True,
        )
        assert committed.returncode == 0, committed.stderr
    finally:
        subprocess.run([*cli, "rm", "-f", container], capture_output=True)
    yield name
    subprocess.run([*cli, "rmi", "-f", name], capture_output=True)


def _volumes(engine: str) -> set[str]:
    listed = subprocess.run(
        [*engine_cli(engine), "volume", "ls", "-q"], capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def test_an_image_volume_goes_with_its_container(site, dataset, tmp_path, engine, volume_image):
    """An image's VOLUME gets an anonymous volume per container; removing the container
    without its volumes left one per run, holding what the tool wrote there."""
    container_plugin(
        site, "volumed", "echo kept > /data/x; echo ran > {out_dir}/ran", image=volume_image
    )
    before = _volumes(engine)
    result, _ = run_on(site, engine, "volumed", dataset, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert _volumes(engine) == before
    assert plugin_containers(engine, "lab/volumed") == []


#: 1500 folders, one inside the other, in the output; then the plugin fails
DEEP = (
    "cd {out_dir} && i=0; while [ $i -lt 1500 ]; do mkdir d && cd d; i=$((i+1)); done; "
    "echo x > bottom; exit 3"
)


def test_a_failed_container_run_leaving_a_very_deep_output_is_cleaned_up(
    site, dataset, tmp_path, engine
):
    """A container plugin's output 1500 folders deep: removing its staging ended the
    run in `internal error (RecursionError ...)` with its record left `running`, and
    every later run into that --out, and `runs clean`, ended the same way."""
    container_plugin(site, "deep", DEEP)
    container_plugin(site, "fine", "echo ok > {out_dir}/ok")
    out = tmp_path / "out"
    try:
        result, record = run_on(site, engine, "deep", dataset, out)
        assert result.returncode == 1, result.stderr
        assert record["status"] == "failed" and record["error"]["type"] == "ContainerFailed"
        assert not (out / "_staging").exists()
        result, record = run_on(site, engine, "fine", dataset, out)
        assert result.returncode == 0, result.stderr
        assert record["status"] == "succeeded"
    finally:  # pytest's own clean-up of old tmp folders recurses (shutil.rmtree, < 3.12)
        subprocess.run(["rm", "-rf", str(out)], check=False)
