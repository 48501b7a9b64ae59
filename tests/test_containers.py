"""Container plugins on the real Docker Engine and the real Podman service.

Every test that takes the `engine` fixture runs once per engine; CI requires
both (MDIVICOM_REQUIRE_ENGINES), elsewhere a missing engine skips with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import pytest

from containerkit import container_plugin, image_inspect, leftover_containers, run_on
from engines import TEST_IMAGE, engine_cli, need_engine
from mdivicomtools.runner import ValidationFailed, run_plugin
from pluginsite import MDIVICOM, interruptible

pytestmark = pytest.mark.engines


COUNT = (
    "wc -l < {dataset_dir}/a.txt > {out_dir}/lines.txt && "
    "mkdir -p {out_dir}/deep && cp {config_path} {out_dir}/deep/config.json && "
    "echo done-$MDIVICOM_RUN_ID"
)


def test_outputs_are_written_promoted_and_owned_by_the_user(site, dataset, tmp_path, engine):
    container_plugin(site, "count", COUNT)
    out = tmp_path / "out"
    record = run_plugin("count", dataset=dataset, out=out, backend=engine, sets=["k=1"])
    assert record.status == "succeeded", record.error
    assert record.exit_code == 0 and record.backend.name == engine
    assert (out / "count" / "lines.txt").read_text().strip() == "2"
    assert json.loads((out / "count" / "deep" / "config.json").read_text()) == {"k": 1}
    assert [o.path for o in record.outputs] == ["deep/config.json", "lines.txt"]
    for path in (out / "count").rglob("*"):
        stat = path.stat()
        assert (stat.st_uid, stat.st_gid) == (os.getuid(), os.getgid()), path
    assert f"done-{record.run_id}" in (out / record.log).read_text()
    assert leftover_containers(engine, record.run_id) == []
    assert sorted(p.name for p in out.iterdir()) == ["_runs", "count"]


def test_a_site_checksum_hook_over_a_container_s_output_is_no_warning(
    site, dataset, tmp_path, engine
):
    """A site's finalisation hook writing a checksum list beside a container's output
    (files the engine wrote as the user) got `the output changed while it was
    finalised ... a finalisation hook or a process the plugin left running` on every
    run; its file is now listed, noted in the log, and no warning is given."""
    import hashlib

    from mdivicomtools import hookimpl
    from mdivicomtools.hooks.manager import load_hooks

    class Checksums:
        @hookimpl
        def mdivicom_finalize_outputs(self, outcome):
            files = sorted(p for p in outcome.staging_dir.rglob("*") if p.is_file())
            (outcome.staging_dir / "LAB-SHA256SUMS").write_text(
                "".join(
                    f"{hashlib.sha256(p.read_bytes()).hexdigest()}  "
                    f"{p.relative_to(outcome.staging_dir)}\n"
                    for p in files
                )
            )

    container_plugin(site, "count", COUNT)
    out = tmp_path / "out"
    hooks = load_hooks(extra=[("lab-checksum", Checksums())])
    record = run_plugin("count", dataset=dataset, out=out, backend=engine, hooks=hooks)
    assert record.status == "succeeded", record.error
    assert record.warnings == [] and record.hook_errors == []
    assert [o.path for o in record.outputs] == ["LAB-SHA256SUMS", "deep/config.json", "lines.txt"]
    assert "  lines.txt\n" in (out / "count" / "LAB-SHA256SUMS").read_text()
    assert (
        "finalisation hook 'lab-checksum' wrote into the output (added LAB-SHA256SUMS)"
        in (out / record.log).read_text()
    )


def test_record_pins_the_image_the_engine_reports(site, dataset, tmp_path, engine):
    container_plugin(site, "count", COUNT)
    record = run_plugin("count", dataset=dataset, out=tmp_path / "out", backend=engine)
    info = image_inspect(engine)
    container = record.container
    assert container.image == TEST_IMAGE
    assert container.image_id.removeprefix("sha256:") == info["Id"].removeprefix("sha256:")
    assert container.repo_digests == (info.get("RepoDigests") or [])
    assert container.engine == engine and container.engine_version
    assert container.exit_code == 0 and container.oom_killed is False
    assert len(container.container_id) == 64
    assert record.backend.engine == f"{engine} {container.engine_version}"
    assert container.endpoint.startswith("unix://")


def test_the_container_runs_as_the_invoking_user_with_writable_home(
    site, dataset, tmp_path, engine
):
    container_plugin(
        site,
        "whoami",
        "id -u > {out_dir}/uid; id -g > {out_dir}/gid; "
        "touch $HOME/h $TMPDIR/t && echo ok > {out_dir}/home",
    )
    out = tmp_path / "out"
    record = run_plugin("whoami", dataset=dataset, out=out, backend=engine)
    assert record.status == "succeeded", (out / record.log).read_text()
    assert (out / "whoami" / "uid").read_text().strip() == str(os.getuid())
    assert (out / "whoami" / "gid").read_text().strip() == str(os.getgid())
    assert (out / "whoami" / "home").read_text().strip() == "ok"


def test_writing_into_the_dataset_fails_inside_the_container(site, dataset, tmp_path, engine):
    container_plugin(site, "vandal", "echo x > {out_dir}/ok; touch {dataset_dir}/new.txt")
    out = tmp_path / "out"
    record = run_plugin("vandal", dataset=dataset, out=out, backend=engine)
    assert record.status == "failed" and record.exit_code == 1
    assert record.error.type == "ContainerFailed"
    assert "Read-only file system" in (out / record.log).read_text()
    assert not (dataset / "new.txt").exists()
    assert not (out / "vandal").exists()


def test_nonzero_exit_fails_with_the_exit_code_and_keeps_earlier_output(
    site, dataset, tmp_path, engine
):
    container_plugin(site, "flaky", "echo v1 > {out_dir}/v")
    out = tmp_path / "out"
    assert run_plugin("flaky", dataset=dataset, out=out, backend=engine).status == "succeeded"
    container_plugin(site, "flaky", "echo v2 > {out_dir}/v; echo broken >&2; exit 42")
    result, record = run_on(site, engine, "flaky", dataset, out, "--overwrite")
    assert result.returncode == 1
    assert record["status"] == "failed" and record["exit_code"] == 42, record["error"]
    assert record["container"]["exit_code"] == 42
    assert record["error"] == {
        "type": "ContainerFailed",
        "message": "the container exited with status 42",
    }
    assert "broken" in result.stderr  # live logs on stderr
    assert (out / "flaky" / "v").read_text() == "v1\n"


def test_timeout_stops_and_removes_the_container(site, dataset, tmp_path, engine):
    container_plugin(site, "sleepy", "echo started; sleep 300")
    out = tmp_path / "out"
    started = time.monotonic()
    result, record = run_on(site, engine, "sleepy", dataset, out, "--timeout", "2")
    assert time.monotonic() - started < 60
    assert result.returncode == 124, result.stderr
    assert record["status"] == "timed_out" and record["error"]["type"] == "Timeout"
    assert leftover_containers(engine, record["run_id"]) == []
    assert not (out / "sleepy").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_interrupt_stops_and_removes_the_container(site, dataset, tmp_path, engine, sig):
    container_plugin(site, "sleepy", "echo started; sleep 300")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            MDIVICOM,
            "run",
            "sleepy",
            "--dataset",
            str(dataset),
            "--out",
            str(out),
            "--backend",
            engine,
            "--json",
        ],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 60
    log = None
    while time.monotonic() < deadline:
        logs = list((out / "_runs").glob("*.log")) if (out / "_runs").exists() else []
        if logs and "started" in logs[0].read_text():
            log = logs[0]
            break
        time.sleep(0.1)
    assert log is not None, "the container never started"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = json.loads(stdout)
    assert record["status"] == "interrupted"
    # SIGHUP (the terminal closed) and SIGQUIT (Ctrl-\\) killed the runner outright: the
    # container ran on
    name = "Ctrl-C (SIGINT)" if sig == signal.SIGINT else sig.name
    assert record["error"]["message"] == f"interrupted by {name}"
    assert record["container"]["container_id"]
    assert leftover_containers(engine, record["run_id"]) == []
    assert sorted(p.name for p in out.iterdir()) == ["_runs"]


def test_missing_image_with_pull_never_is_exit_2(site, dataset, tmp_path, engine):
    container_plugin(site, "ghost", "true", image="localhost/no-such-image:9")
    result, _ = run_on(site, engine, "ghost", dataset, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"  - image 'localhost/no-such-image:9' is not on {engine} and the plugin's pull policy "
        f"is 'never'; load it first (e.g. `{engine} load` or `{engine} pull`), or choose "
        "another --backend"
    )
    assert not (tmp_path / "out").exists()


def test_a_missing_image_pinned_by_digest_is_not_sent_to_load_again(
    site, dataset, tmp_path, engine
):
    """A site without a registry did `images load` as told, and was told to load it
    again: a loaded image keeps no repository digest (Docker) or gets another one
    (Podman), so a pin by digest never finds it. Both the run and `plugins check`
    now say so, and how to run a loaded copy."""
    pinned = "localhost/mdivicom-absent@sha256:" + "0" * 64
    container_plugin(site, "pinned", "true", image=pinned)
    result, _ = run_on(site, engine, "pinned", dataset, tmp_path / "out")
    assert result.returncode == 2
    problem = result.stderr.splitlines()[-1]
    assert problem.startswith(
        f"  - image '{pinned}' is not on {engine} and the plugin's pull policy is 'never'; "
        f"pull it from its registry (`{engine} pull {pinned}`): an image pinned by digest"
    )
    assert f"which `{engine} load` and `mdivicom images load` do not keep" in problem
    assert "load it first" not in problem
    check = site.cli("plugins", "check", "pinned", "--backend", engine)
    [line] = [line for line in check.stdout.splitlines() if line.startswith("FAIL  image:")]
    assert "name the image by tag in the manifest to run a loaded copy" in line
    assert "load it first" not in line


def test_a_pull_without_a_registry_is_a_failed_run_naming_the_pull(site, dataset, tmp_path, engine):
    container_plugin(site, "ghost", "true", image="localhost/no-such-image:9", pull="missing")
    out = tmp_path / "out"
    result = site.cli(
        "run", "ghost", "--dataset", str(dataset), "--out", str(out), "--backend", engine
    )
    assert result.returncode == 1, result.stderr
    [record_path] = (out / "_runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "PullFailed"
    assert record["error"]["message"].startswith(
        "could not pull 'localhost/no-such-image:9' from localhost: "
    )
    assert "PullFailed: could not pull 'localhost/no-such-image:9'" in result.stdout
    assert not (out / "ghost").exists() and not (out / "_staging").exists()


def test_pinned_digest_must_match(site, dataset, tmp_path, engine):
    wrong = "sha256:" + "0" * 64
    container_plugin(site, "pinned", "true", image=f"localhost/mdivicom-test@{wrong}")
    with pytest.raises(ValidationFailed) as excinfo:
        run_plugin("pinned", dataset=dataset, out=tmp_path / "out", backend=engine)
    (problem,) = excinfo.value.problems
    assert "localhost/mdivicom-test@" + wrong in problem


def test_pinned_digest_that_matches_runs(site, dataset, tmp_path):
    need_engine("podman")  # only Podman gives an imported image a repo digest
    # an image loaded more than once (images save/load) has a digest per load
    digests = image_inspect("podman")["RepoDigests"]
    digest = digests[0].split("@", 1)[1]
    container_plugin(
        site, "pinned", "echo ok > {out_dir}/ok", image=f"localhost/mdivicom-test@{digest}"
    )
    record = run_plugin("pinned", dataset=dataset, out=tmp_path / "out", backend="podman")
    assert record.status == "succeeded"
    assert f"localhost/mdivicom-test@{digest}" in record.container.repo_digests
    assert sorted(record.container.repo_digests) == sorted(digests)


def test_no_network_by_default(site, dataset, tmp_path, engine):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        with contextlib.suppress(OSError):  # the socket is closed when the test ends
            accepted.append(server.accept())

    threading.Thread(target=accept, daemon=True).start()
    container_plugin(
        site,
        "netprobe",
        f"ls /sys/class/net > {{out_dir}}/ifaces; "
        f"if nc -w 2 127.0.0.1 {port} </dev/null; then echo reached; "
        f"else echo unreachable; fi > {{out_dir}}/probe",
    )
    out = tmp_path / "out"
    try:
        record = run_plugin("netprobe", dataset=dataset, out=out, backend=engine)
    finally:
        server.close()
    assert record.status == "succeeded"
    assert (out / "netprobe" / "ifaces").read_text().split() == ["lo"]
    assert (out / "netprobe" / "probe").read_text().strip() == "unreachable"
    assert accepted == []


def test_dry_run_prints_the_plan_and_runs_nothing(site, dataset, tmp_path, engine):
    container_plugin(site, "count", COUNT, env={"LAB": "x"})
    out = tmp_path / "out"
    result, record = run_on(site, engine, "count", dataset, out, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert record["status"] == "dry_run"
    plan = record["result"]["plan"]
    assert plan["engine"] == engine and plan["image"] == TEST_IMAGE
    assert plan["user"] == f"{os.getuid()}:{os.getgid()}" and plan["network"] is False
    assert plan["command"][2].startswith("wc -l < /mdivicom/dataset/a.txt > /mdivicom/out/")
    assert [(m["target"], m["read_only"]) for m in plan["mounts"]] == [
        ("/mdivicom/dataset", True),
        ("/mdivicom/out", False),
        ("/mdivicom/work", False),
        ("/mdivicom/config.json", True),
    ]
    assert plan["env"]["LAB"] == "x" and plan["env"]["MDIVICOM_DATASET_DIR"] == "/mdivicom/dataset"
    assert f"image:      {TEST_IMAGE}" in result.stderr
    assert "mount:      " + str(dataset) + " -> /mdivicom/dataset (ro)" in result.stderr
    assert record["container"]["container_id"] is None
    assert leftover_containers(engine, record["run_id"]) == []
    assert not (out / "count").exists()


@pytest.mark.parametrize("pull", ["missing", "always"])
def test_a_dry_run_pulls_nothing_and_says_a_run_would(site, dataset, tmp_path, engine, pull):
    # no registry is reachable here: any pull would fail the dry run (PullFailed)
    image = "localhost/no-such-image:9" if pull == "missing" else TEST_IMAGE
    container_plugin(site, "planned", "true", image=image, pull=pull)
    result, record = run_on(site, engine, "planned", dataset, tmp_path / "out", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert record["status"] == "dry_run", record["error"]
    plan = record["result"]["plan"]
    registry = "localhost"
    assert plan["pull"] == f"a run pulls {image} from {registry} first (pull policy '{pull}')"
    assert f"pull:       a run pulls {image} from {registry} first" in result.stderr
    if pull == "missing":
        assert plan["image_id"] is None and record["container"]["image_id"] is None
        assert f"image:      {image} (not on {engine} yet)" in result.stderr
    else:  # the image the engine has now
        local = image_inspect(engine)["Id"].removeprefix("sha256:")
        assert plan["image_id"].removeprefix("sha256:") == local
    assert "pulling" not in result.stderr


def test_a_batch_dry_run_pulls_nothing(site, tmp_path, engine):
    container_plugin(site, "planned", "true", image="localhost/no-such-image:9", pull="missing")
    root = tmp_path / "study"
    for name in ("s1", "s2"):
        (root / "sessions" / name).mkdir(parents=True)
        (root / "sessions" / name / "a.txt").write_text("x\n")
    result = site.cli(
        "run",
        "planned",
        "--dataset",
        str(root),
        "--sessions",
        "*",
        "--out",
        str(tmp_path / "out"),
        "--backend",
        engine,
        "--dry-run",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PullFailed" not in result.stdout + result.stderr


# serial: any container run on this host removes a dead runner's containers, so a
# test run at the same time could clear the planted one before this run does
@pytest.mark.serial
def test_leftovers_of_a_killed_runner_are_removed_on_the_next_run(site, dataset, tmp_path, engine):
    run_id = f"20000101T000000Z_{os.urandom(4).hex()}"
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = [
        "--label",
        f"mdivicomtools.run_id={run_id}",
        "--label",
        f"mdivicomtools.pid={dead.pid}",
        "--label",
        f"mdivicomtools.host={os.uname().nodename}",
    ]
    subprocess.run(
        [*engine_cli(engine), "create", "--network", "none", *labels, TEST_IMAGE, "sleep", "300"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert leftover_containers(engine, run_id)
    container_plugin(site, "count", COUNT)
    record = run_plugin("count", dataset=dataset, out=tmp_path / "out", backend=engine)
    assert record.status == "succeeded"
    assert leftover_containers(engine, run_id) == []
    assert "removed leftover container" in (tmp_path / "out" / record.log).read_text()


def test_same_plugin_gives_identical_outputs_on_both_engines(site, dataset, tmp_path):
    for engine in ("docker", "podman"):
        need_engine(engine)
    container_plugin(
        site,
        "checksums",
        "cd {dataset_dir} && find . -type f | sort | xargs sha256sum "
        "> {out_dir}/SHA256SUMS && wc -c a.txt > {out_dir}/size",
    )
    records = {
        engine: run_plugin("checksums", dataset=dataset, out=tmp_path / engine, backend=engine)
        for engine in ("docker", "podman")
    }
    assert {e: r.status for e, r in records.items()} == {
        "docker": "succeeded",
        "podman": "succeeded",
    }
    assert records["docker"].outputs == records["podman"].outputs
    assert len(records["docker"].outputs) == 2


def test_an_empty_entrypoint_clears_the_images_on_both_engines(site, dataset, tmp_path, engine):
    """`"entrypoint": []` ran `command` alone on Docker, while Podman (podman-py drops
    an empty list from its request) kept the image's ENTRYPOINT and gave it `command`
    as arguments; and an entrypoint given in the manifest drops the image's CMD on
    both, which the plan now says instead of `(image default)`."""
    import uuid

    tag = f"localhost/mdivicom-entrypoint-{uuid.uuid4().hex[:8]}:1"
    name = f"mdivicom-entrypoint-{uuid.uuid4().hex[:8]}"
    cli = engine_cli(engine)
    subprocess.run([*cli, "create", "--name", name, TEST_IMAGE, "true"], check=True, timeout=120)
    try:
        subprocess.run(
            [*cli, "commit", "--change", 'ENTRYPOINT ["echo", "image-entrypoint"]',
             "--change", 'CMD ["image-cmd"]', name, tag],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    finally:
        subprocess.run([*cli, "rm", "-f", name], capture_output=True, timeout=120, check=False)
    try:
        script = 'echo "argv: $0 $*" > {out_dir}/argv'
        container_plugin(
            site, "noep", "unused", image=tag, entrypoint=["sh", "-c", script], command=None
        )
        container_plugin(site, "cleared", "unused", image=tag, entrypoint=[],
                         command=["sh", "-c", script, "tool", "x"])  # fmt: skip
        out = tmp_path / "out"
        record = run_plugin("cleared", dataset=dataset, out=out, backend=engine)
        assert record.status == "succeeded", (out / record.log).read_text()
        assert (out / "cleared" / "argv").read_text() == "argv: tool x\n"
        record = run_plugin("noep", dataset=dataset, out=out, backend=engine)
        assert record.status == "succeeded", (out / record.log).read_text()
        assert (out / "noep" / "argv").read_text() == "argv: sh \n"  # no image-cmd
        result, _ = run_on(site, engine, "cleared", dataset, tmp_path / "dry", "--dry-run")
        assert "entrypoint: none (the image's ENTRYPOINT is cleared)" in result.stderr
        result, _ = run_on(site, engine, "noep", dataset, tmp_path / "dry", "--dry-run")
        assert "command:    none (an entrypoint in the manifest drops the image's CMD)" in (
            result.stderr
        )
    finally:
        subprocess.run([*cli, "rmi", tag], capture_output=True, timeout=120, check=False)


def test_engine_unreachable_is_exit_2_naming_the_socket(site, dataset, tmp_path):
    container_plugin(site, "count", COUNT)
    args = ["run", "count", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    docker = site.cli(*args, "--backend", "docker", DOCKER_HOST="unix:///tmp/no-docker.sock")
    assert docker.returncode == 2
    assert docker.stderr.splitlines()[-1].startswith(
        "Error: backend 'docker' is not available: cannot reach Docker Engine at "
        "unix:///tmp/no-docker.sock"
    )
    assert "available backends:" in docker.stderr
    podman = site.cli(*args, "--backend", "podman", CONTAINER_HOST="unix:///tmp/no-podman.sock")
    assert podman.returncode == 2
    assert "no Podman service answers at CONTAINER_HOST=unix:///tmp/no-podman.sock" in podman.stderr


def test_an_ssh_container_host_that_cannot_be_reached_is_unavailable_in_seconds(
    site, dataset, tmp_path
):
    """podman-py waits up to 300 s for its ssh tunnel without looking whether ssh gave
    up: a refused port or an unknown host held `run` and `backends list` for five
    minutes. The endpoint is now probed with ssh first, and the reason named."""
    import shutil

    if shutil.which("ssh") is None:
        pytest.fail("the ssh client is needed: apt-get install openssh-client")
    host = "ssh://nobody@127.0.0.1:1/run/podman/podman.sock"  # port 1: refused at once
    container_plugin(site, "count", COUNT)
    started = time.monotonic()
    listed = subprocess.run(
        [MDIVICOM, "backends", "list", "--json"], env=site.env(CONTAINER_HOST=host),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    [podman] = [b for b in json.loads(listed.stdout) if b["name"] == "podman"]
    assert podman["available"] is False
    assert podman["reason"] == (
        f"no Podman service answers at CONTAINER_HOST={host}: ssh to nobody@127.0.0.1:1 "
        "failed: ssh: connect to host 127.0.0.1 port 1: Connection refused"
    )
    assert "logs in there without a prompt" in podman["fix"]
    run = subprocess.run(
        [MDIVICOM, "run", "count", "--dataset", str(dataset), "--out", str(tmp_path / "out"),
         "--backend", "podman"],
        env=site.env(CONTAINER_HOST=host), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "Connection refused" in run.stderr


def test_a_podman_service_that_never_answers_is_unavailable_not_a_hang(site, dataset, tmp_path):
    """A socket that accepts and never replies hung every podman command, `backends
    list` included, and a run's --timeout did not apply."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])  # accepted, never answered

    threading.Thread(target=accept, daemon=True).start()
    try:
        begun = time.monotonic()
        listed = site.cli("backends", "list", "--json", CONTAINER_HOST=f"unix://{path}")
        assert time.monotonic() - begun < 30, "backends list waited on the silent service"
        [podman] = [b for b in json.loads(listed.stdout) if b["name"] == "podman"]
        assert podman["available"] is False, podman
        assert f"no Podman service answers at CONTAINER_HOST=unix://{path}" in podman["reason"]
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_backend_choice_env_and_user_config(site, dataset, tmp_path):
    for engine in ("docker", "podman"):
        need_engine(engine)
    container_plugin(site, "count", COUNT)
    common = ["--dataset", str(dataset), "--json"]
    chosen = {}
    config = tmp_path / "user.toml"
    config.write_text('backend = "podman"\n')
    for label, args, env in [
        ("auto", [], {}),
        ("env", [], {"MDIVICOM_BACKEND": "podman"}),
        ("config", ["--backend", "auto"], {"MDIVICOM_CONFIG_FILE": str(config)}),
        ("explicit", ["--backend", "docker"], {"MDIVICOM_BACKEND": "podman"}),
    ]:
        result = site.cli("run", "count", "--out", str(tmp_path / label), *common, *args, **env)
        assert result.returncode == 0, result.stderr
        chosen[label] = json.loads(result.stdout)["backend"]["name"]
    assert chosen == {"auto": "docker", "env": "podman", "config": "podman", "explicit": "docker"}
    strict = site.cli(
        "run",
        "count",
        "--out",
        str(tmp_path / "strict"),
        *common,
        MDIVICOM_BACKEND="podman",
        CONTAINER_HOST="unix:///tmp/no-podman.sock",
    )
    assert strict.returncode == 2
    assert "backend 'podman' (from MDIVICOM_BACKEND) is not available" in strict.stderr
    site.plugin("pyplug")
    python = site.cli(
        "run", "pyplug", "--out", str(tmp_path / "py"), *common, MDIVICOM_BACKEND="podman"
    )
    assert python.returncode == 0 and json.loads(python.stdout)["backend"]["name"] == "python"


def test_backends_list(site):
    result = site.cli("backends", "list", "--json", DOCKER_HOST="unix:///tmp/no-docker.sock")
    assert result.returncode == 0
    items = {item["name"]: item for item in json.loads(result.stdout)}
    assert items["python"]["available"] is True and items["python"]["kinds"] == ["python"]
    assert items["docker"]["available"] is False
    assert "unix:///tmp/no-docker.sock" in items["docker"]["reason"]
    assert "DOCKER_HOST" in items["docker"]["fix"]
    table = site.cli("backends", "list").stdout
    assert table.splitlines()[0].split() == ["NAME", "RUNS", "AVAILABLE", "ENGINE", "/", "PROBLEM"]


def test_podman_starts_a_private_service_when_none_answers(site, dataset, tmp_path, monkeypatch):
    need_engine("podman")
    import mdivicomtools_podman.engine as podman_engine

    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.setattr(podman_engine, "ROOTFUL_SOCKET", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    container_plugin(site, "count", COUNT)
    record = run_plugin("count", dataset=dataset, out=tmp_path / "out", backend="podman")
    assert record.status == "succeeded"
    assert record.container.endpoint.startswith("unix:///tmp/mdivicom-podman-")
    endpoint = record.container.endpoint
    services = subprocess.run(
        ["pgrep", "-f", f"podman system service --time=0 {endpoint}"],
        capture_output=True,
        text=True,
    )
    assert services.stdout.strip() == ""  # the private service was stopped after the run
    assert not Path(endpoint.removeprefix("unix://")).exists()


def test_a_container_plugins_result_bundle_is_validated(site, dataset, tmp_path, engine):
    sidecar = json.dumps(
        {
            "resultbundle_type": "lab.checksums.v1",
            "schema_version": "1.0.0",
            "time_reference": {"kind": "none", "unit": "s"},
            "files": [
                {"path": "SHA256SUMS", "role": "checksums", "format": "txt", "required": True}
            ],
        }
    )
    container_plugin(
        site,
        "checksums",
        "cd {dataset_dir} && find . -type f | sort | xargs sha256sum "
        f"> {{out_dir}}/SHA256SUMS && printf '%s' '{sidecar}' "
        "> {out_dir}/resultbundle.json",
    )
    record = run_plugin("checksums", dataset=dataset, out=tmp_path / "out", backend=engine)
    assert record.status == "succeeded", record.error
    assert msgspec.to_builtins(record.resultbundles) == [
        {
            "path": "resultbundle.json",
            "type": "lab.checksums.v1",
            "schema_version": "1.0.0",
            "valid": True,
            "problems": [],
        }
    ]


def test_a_container_consumer_reads_the_bundle_and_its_record_names_the_producer_run(
    site, dataset, tmp_path, engine
):
    """A container plugin chained on another's result bundle (docs/resultbundles.md)."""
    sidecar = (
        '{"resultbundle_type": "lab.counts.v1", "schema_version": "1.0.0", '
        '"time_reference": {"kind": "none", "unit": "none"}, '
        '"producer": {"tool_ref": "%s", "tool_version": "%s", "pipeline_run_id": "%s"}, '
        '"files": [{"path": "n.tsv", "role": "counts", "format": "tsv", "required": true}]}'
    )
    container_plugin(
        site,
        "count",
        "printf 'n\\n2\\n' > {out_dir}/n.tsv && printf '" + sidecar + "' "
        '"$MDIVICOM_PLUGIN" "$MDIVICOM_PLUGIN_VERSION" "$MDIVICOM_RUN_ID" '
        "> {out_dir}/resultbundle.json",
    )
    container_plugin(
        site,
        "use",
        "grep -o 'lab.counts.v1' {dataset_dir}/resultbundle.json > {out_dir}/type.txt && "
        "tail -n 1 {dataset_dir}/n.tsv > {out_dir}/n.txt",
    )
    out = tmp_path / "out"
    first = run_plugin("count", dataset=dataset, out=out, backend=engine)
    assert first.status == "succeeded" and first.resultbundles[0].valid, first.resultbundles
    used = run_plugin("use", dataset=out / "count", out=out, backend=engine)
    assert used.status == "succeeded", used.error
    assert (out / "use" / "n.txt").read_text() == "2\n"
    [bundle] = used.input_bundles
    assert (bundle.path, bundle.type, bundle.producer, bundle.producer_run_id) == (
        "resultbundle.json",
        "lab.counts.v1",
        "lab/count",
        first.run_id,
    )


def test_container_checksum_example_on_both_engines(dataset, tmp_path, monkeypatch):
    import hashlib

    for engine in ("docker", "podman"):
        need_engine(engine)
    examples = Path(__file__).parents[1] / "examples" / "container-checksum"
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", str(examples))
    outputs = {}
    for engine in ("docker", "podman"):
        result = subprocess.run(
            [
                MDIVICOM,
                "run",
                "checksum-dataset",
                "--dataset",
                str(dataset),
                "--out",
                str(tmp_path / engine),
                "--backend",
                engine,
                "--json",
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)
        assert record["resultbundles"][0]["valid"] is True
        outputs[engine] = record["outputs"]
    assert outputs["docker"] == outputs["podman"]
    sums = (tmp_path / "docker" / "checksum-dataset" / "SHA256SUMS").read_text().splitlines()
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())
    expected = [f"{hashlib.sha256((dataset / f).read_bytes()).hexdigest()}  ./{f}" for f in files]
    assert sums == expected


def test_an_ssh_docker_host_names_paramiko_not_a_stopped_engine(site):
    listed = site.cli("backends", "list", "--json", DOCKER_HOST="ssh://nobody@127.0.0.1:1")
    [docker] = [b for b in json.loads(listed.stdout) if b["name"] == "docker"]
    assert docker["available"] is False
    assert "paramiko" in docker["reason"]
    assert docker["fix"].startswith("docker-py reaches ssh:// hosts only with the paramiko")
