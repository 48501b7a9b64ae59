"""Container plugins that leave hostile entries in their output, on both real engines.

A container may run as root: it can create FIFOs, setuid files and symlinks to
any host path in the bind-mounted output folder. None of them is read by the
runner or promoted; each test also checks that no container is left.
"""

from __future__ import annotations

import contextlib
import selectors
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
    good_earlier_run,
    last_record,
    records,
    run_cli,
    start_cli,
)
from hostile import CONTAINER_SCRIPTS

from containerkit import container_plugin, leftover_containers
from engines import engine_cli, need_engine
from pluginsite import MDIVICOM

pytestmark = pytest.mark.engines


def _fault(hsite, engine, dataset, out, name, **fmt):
    plugin = f"c-{name}"
    container_plugin(hsite, plugin, CONTAINER_SCRIPTS[name].format(**fmt))
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
    assert leftover_containers(engine, last_record(out)["run_id"]) == []


def test_container_symlink_to_a_host_file(hsite, engine, dataset, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text('{"resultbundle_type": "TOP-SECRET-CONTENT"}')
    out = tmp_path / "out"
    plugin, done = _fault(hsite, engine, dataset, out, "symlink-host", secret=secret)
    _assert_refused(out, plugin, done, "resultbundle.json (a symlink to an absolute path)")
    record_file = out / "_runs" / f"{last_record(out)['run_id']}.json"
    assert "TOP-SECRET" not in record_file.read_text() + done.stdout + done.stderr
    assert leftover_containers(engine, last_record(out)["run_id"]) == []


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
    assert leftover_containers(engine, last_record(out)["run_id"]) == []


class SilentRegistry:
    """A registry address that accepts connections, reads what it is sent and never
    answers; it counts the connections the engine still holds open."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.setblocking(False)
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._open = 0
        self.contacted = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                if sock is self._server:
                    with contextlib.suppress(OSError):
                        connection, _ = self._server.accept()
                        connection.setblocking(False)
                        self._selector.register(connection, selectors.EVENT_READ)
                        with self._lock:
                            self._open += 1
                        self.contacted.set()
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the engine closed it: it gave up on this pull
                    self._selector.unregister(sock)
                    sock.close()
                    with self._lock:
                        self._open -= 1

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def assert_abandoned(self, within: float = 30.0) -> None:
        """The engine let go of the registry: no pull is left going on engine-side."""
        deadline = time.monotonic() + within
        while self.open_connections():
            assert time.monotonic() < deadline, (
                f"the engine still holds {self.open_connections()} connection(s) to the "
                f"registry {within:g} s after the run ended: its pull goes on"
            )
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


@pytest.fixture
def silent_registry():
    registry = SilentRegistry()
    yield registry
    registry.close()


def _pull_plugin(hsite, image):
    hsite.manifest(
        "pulls.json",
        {
            "meta": {
                "api_version": "mdivicomtools.plugin.v0.1",
                "id": "pulls",
                "kind": "container",
                "version": "1.0.0",
                "publisher": "lab",
                "description": "An image that must be pulled first.",
            },
            "container": {"image": image, "command": ["true"], "pull": "always"},
        },
    )


def _assert_pull_recorded(out, status, *named):
    [record] = records(out)
    assert record["status"] == status, record
    for text in named:
        assert text in record["error"]["message"], record["error"]
    assert not (out / "pulls").exists()
    assert_no_staging(out)
    return record


def test_a_pull_from_a_silent_registry_obeys_timeout(
    hsite, engine, dataset, tmp_path, silent_registry
):
    image = f"{silent_registry.address}/lab/never:1"
    _pull_plugin(hsite, image)
    out = tmp_path / "out"
    started = time.monotonic()
    done = run_cli(
        hsite,
        *("run", "pulls", "--dataset", str(dataset), "--out", str(out)),
        *("--backend", engine, "--timeout", "2"),
        timeout=60,
    )
    assert done.returncode == 124, done.stderr
    assert time.monotonic() - started < 30
    record = _assert_pull_recorded(
        out, "timed_out", f"pulling {image!r} from {silent_registry.address}", "--timeout 2 s"
    )
    assert record["error"]["type"] == "Timeout"
    silent_registry.assert_abandoned()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_pull_from_a_silent_registry_is_recorded(
    hsite, engine, dataset, tmp_path, silent_registry, sig
):
    image = f"{silent_registry.address}/lab/never:1"
    _pull_plugin(hsite, image)
    out = tmp_path / "out"
    proc = start_cli(
        hsite, "run", "pulls", "--dataset", str(dataset), "--out", str(out), "--backend", engine
    )
    # the engine is connected and waiting for an answer
    assert silent_registry.contacted.wait(60), "the engine never contacted the registry"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    record = _assert_pull_recorded(
        out, "interrupted", f"while pulling {image!r} from {silent_registry.address}"
    )
    assert record["error"]["message"].startswith(
        "interrupted by " + ("Ctrl-C (SIGINT)" if sig == signal.SIGINT else "SIGTERM")
    )
    silent_registry.assert_abandoned()


def test_images_pull_from_a_silent_registry_obeys_timeout(hsite, engine, silent_registry):
    image = f"{silent_registry.address}/lab/never:1"
    started = time.monotonic()
    done = run_cli(
        hsite, "images", "pull", image, "--backend", engine, "--timeout", "2", timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30
    assert f"pulling {image!r} from {silent_registry.address} did not finish within" in done.stderr
    assert "--timeout 2 s" in done.stderr and "Traceback" not in done.stderr
    silent_registry.assert_abandoned()


def test_a_failed_pull_is_a_failed_run(hsite, engine, dataset, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: the engine is refused at once
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    image = f"{address}/lab/never:1"
    _pull_plugin(hsite, image)
    out = tmp_path / "out"
    done = run_cli(
        hsite,
        *("run", "pulls", "--dataset", str(dataset), "--out", str(out), "--backend", engine),
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    record = _assert_pull_recorded(out, "failed", f"could not pull {image!r} from {address}")
    assert record["error"]["type"] == "PullFailed"


#: the interpreter of the `mdivicom` under test (another version's with MDIVICOM_TEST_COMMAND)
RUNNER_PYTHON = str(Path(MDIVICOM).with_name(Path(sys.executable).name))
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
        [RUNNER_PYTHON, "-c", PRIVATE_SERVICE_RUN, str(tmp_path), str(dataset), str(out)],
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
        for container in leftover_containers("podman", run_id):
            subprocess.run(
                [*engine_cli("podman"), "rm", "-f", container], capture_output=True, check=False
            )


PRIVATE_SERVICE_OOM = """
import sys
import mdivicomtools_podman.engine as podman_engine
from mdivicomtools import run_plugin
podman_engine.ROOTFUL_SOCKET = "unix://" + sys.argv[1] + "/none.sock"
record = run_plugin("c-hog", dataset=sys.argv[2], out=sys.argv[3], backend="podman")
print(record.error.type if record.error else record.status)
"""


def test_an_oom_kill_under_a_private_podman_service_leaves_nothing_in_the_users_folder(
    hsite, dataset, tmp_path
):
    """conmon writes `oom` into its working directory when a container is OOM-killed;
    the private service runs in its own folder, not in the folder mdivicom was run from."""
    need_engine("podman")
    container_plugin(
        hsite, "c-hog", "x=0123456789abcdef; while true; do x=$x$x; done",
        resources={"memory": "64m"},
    )  # fmt: skip
    here = tmp_path / "where-the-user-is"
    here.mkdir()
    env = hsite.env(XDG_RUNTIME_DIR=str(tmp_path / "runtime"))
    env.pop("CONTAINER_HOST", None)
    argv = [RUNNER_PYTHON, "-c", PRIVATE_SERVICE_OOM, str(tmp_path), str(dataset)]
    done = subprocess.run(
        [*argv, str(tmp_path / "out")],
        env=env, cwd=here, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.stdout.strip() == "OutOfMemory", done.stderr
    assert list(here.iterdir()) == []


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found
