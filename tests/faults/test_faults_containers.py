"""Container plugins that leave hostile entries in their output, on both real engines.

A container may run as root: it can create FIFOs, setuid files and symlinks to
any host path in the bind-mounted output folder. None of them is read by the
runner or promoted; each test also checks that no container is left.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faultkit import (
    assert_earlier_intact,
    assert_no_staging,
    container_plugin,
    containers_left,
    good_earlier_run,
    last_record,
    run_cli,
    start_cli,
)
from hostile import CONTAINER_SCRIPTS

from engines import engine_cli, need_engine

pytestmark = pytest.mark.engines


def _fault(hsite, engine, dataset, out, name, **fmt):
    plugin = container_plugin(hsite, f"c-{name}", CONTAINER_SCRIPTS[name].format(**fmt))
    good_earlier_run(hsite, plugin, dataset, out, "--backend", engine)
    done = run_cli(
        hsite,
        *("run", plugin, "--dataset", str(dataset), "--out", str(out)),
        *("--overwrite", "--backend", engine),
    )
    return plugin, done


def _assert_refused(out, plugin, done, *named):
    assert done.returncode == 1, done.stderr
    record = last_record(out)
    assert record["status"] == "failed" and record["error"]["type"] == "UnsafeOutput"
    for text in named:
        assert text in record["error"]["message"]
    assert record["outputs"] == []
    assert_earlier_intact(out, plugin)
    assert_no_staging(out)


def test_container_fifo_resultbundle(hsite, engine, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "fifo")
    _assert_refused(out, plugin, done, "resultbundle.json (a fifo, not a regular file)")
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []


def test_container_symlink_to_a_host_file(hsite, engine, dataset, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text('{"resultbundle_type": "TOP-SECRET-CONTENT"}')
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "symlink-host", secret=secret)
    _assert_refused(out, plugin, done, "resultbundle.json (a symlink to an absolute path)")
    record_file = out / "_runs" / f"{last_record(out)['run_id']}.json"
    assert "TOP-SECRET" not in record_file.read_text() + done.stdout + done.stderr
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []


def test_container_setuid_fifo_and_escaping_symlink(hsite, engine, dataset, tmp_path):
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "special")
    _assert_refused(
        out,
        plugin,
        done,
        "suid (a file with the setuid or setgid bit)",
        "pipe (a fifo, not a regular file)",
        "passwd (a symlink to an absolute path)",
    )
    assert containers_left(engine, f"mdivicomtools.run_id={last_record(out)['run_id']}") == []


@pytest.fixture
def silent_registry():
    """A registry address that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def _pull_plugin(hsite, registry):
    hsite.manifest(
        "pulls.json",
        {
            "meta": {
                "api_version": "mdivicomtools.plugin.v0.1",
                "id": "pulls",
                "kind": "container",
                "version": "1.0.0",
                "publisher": "lab",
                "description": "An image from a registry that never answers.",
            },
            "container": {
                "image": f"{registry}/lab/never:1",
                "command": ["true"],
                "pull": "always",
            },
        },
    )


def test_a_pull_from_a_silent_registry_obeys_timeout(
    hsite, engine, dataset, tmp_path, silent_registry
):
    _pull_plugin(hsite, silent_registry[0])
    out = tmp_path / "out"
    done = run_cli(
        hsite,
        *("run", "pulls", "--dataset", str(dataset), "--out", str(out)),
        *("--backend", engine, "--timeout", "2"),
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "did not finish within --timeout 2 s" in done.stderr
    assert not (out / "pulls").exists()
    assert_no_staging(out)


def test_ctrl_c_stops_a_pull_from_a_silent_registry(
    hsite, engine, dataset, tmp_path, silent_registry
):
    registry, accepted = silent_registry
    _pull_plugin(hsite, registry)
    out = tmp_path / "out"
    proc = start_cli(
        hsite, "run", "pulls", "--dataset", str(dataset), "--out", str(out), "--backend", engine
    )
    deadline = time.monotonic() + 60
    while not accepted:  # the engine is connected and waiting for an answer
        assert time.monotonic() < deadline, "the engine never contacted the registry"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "Aborted."  # nothing ran, so no record
    assert not (out / "pulls").exists()
    assert_no_staging(out)


PRIVATE_SERVICE_RUN = """
import sys
import mdivicomtools_podman.engine as podman_engine
from mdivicomtools import run_plugin
podman_engine.ROOTFUL_SOCKET = "unix://" + sys.argv[1] + "/none.sock"
run_plugin("c-sleeps", dataset=sys.argv[2], out=sys.argv[3], backend="podman")
"""


def test_a_private_podman_service_dies_with_a_killed_runner(hsite, dataset, tmp_path):
    need_engine("podman")
    container_plugin(hsite, "c-sleeps", "touch /mdivicom/out/started; sleep 300")
    out = tmp_path / "out"
    env = hsite.env(XDG_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("CONTAINER_HOST", None)
    runner = subprocess.Popen(
        [sys.executable, "-c", PRIVATE_SERVICE_RUN, str(tmp_path), str(dataset), str(out)],
        env=env,
    )
    deadline = time.monotonic() + 90
    while not list(out.glob("_staging/*/c-sleeps/started")):
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.1)
    services = [
        pid
        for pid in _children(runner.pid)
        if b"system\0service" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert services, "no private podman service was started"
    run_id = next(out.glob("_staging/*")).name
    runner.kill()
    runner.wait(timeout=60)
    try:
        deadline = time.monotonic() + 20
        while any(Path(f"/proc/{pid}").exists() for pid in services):
            assert time.monotonic() < deadline, "the private podman service outlived its runner"
            time.sleep(0.1)
    finally:
        for container in containers_left("podman", f"mdivicomtools.run_id={run_id}"):
            subprocess.run(
                [*engine_cli("podman"), "rm", "-f", container], capture_output=True, check=False
            )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found
