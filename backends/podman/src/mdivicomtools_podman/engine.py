"""The ContainerEngine adapter for Podman, over podman-py and the Podman API service.

Where no service socket answers but the `podman` command exists, a private
`podman system service` is started on a socket in a temporary folder for the
lifetime of the run and stopped afterwards, so Podman works without any set-up.
podman-py details that matter: bind mounts take lower-case keys with
"read_only" (Docker's spelling is accepted and silently mounted read-write),
wait() returns an int, and image ids are bare hex.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from podman import PodmanClient
from podman import errors as podman_errors

from mdivicomtools.common.platform import die_with_parent
from mdivicomtools.common.text import one_line
from mdivicomtools.execution.container.client import ClientEngine
from mdivicomtools.execution.container.engine import EngineError, EngineUnreachable
from mdivicomtools.execution.container.plan import ContainerPlan

ROOTFUL_SOCKET = "unix:///run/podman/podman.sock"
PRIVATE_SERVICE_WAIT_S = 20.0


def candidate_endpoints() -> list[str]:
    """Where a Podman service may listen: CONTAINER_HOST alone when set (as for the
    podman command itself), else the rootful socket, then the user's rootless one."""
    if os.environ.get("CONTAINER_HOST"):
        return [os.environ["CONTAINER_HOST"]]
    endpoints = [ROOTFUL_SOCKET]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    endpoints.append(f"unix://{runtime_dir}/podman/podman.sock")
    return list(dict.fromkeys(endpoints))


def _answers(endpoint: str) -> tuple[PodmanClient, str | None] | None:
    """A client for `endpoint` and the Podman version, if a service answers there.

    The version comes from the _ping response's Server header ("Libpod/4.3.1"):
    Podman's /version endpoint takes a third of a second, longer than a small
    container's whole run.
    """
    if endpoint.startswith("unix://") and not Path(endpoint[len("unix://") :]).exists():
        return None
    client = PodmanClient(base_url=endpoint)
    try:
        response = client.api.get("/_ping")
        if response.status_code == 200:
            server = response.headers.get("Server", "")
            version = server.split("/", 1)[1].split()[0] if server.startswith("Libpod/") else None
            return client, version or response.headers.get("Libpod-Api-Version")
    except Exception:  # any failure to answer means: not this endpoint
        pass
    client.close()
    return None


def _stop_with_runner() -> None:
    die_with_parent(signal.SIGTERM)


def _start_private_service() -> tuple[PodmanClient, str | None, str, Callable[[], None]]:
    folder = Path(tempfile.mkdtemp(prefix="mdivicom-podman-"))
    endpoint = f"unix://{folder / 'podman.sock'}"
    log = (folder / "service.log").open("wb")
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", endpoint],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # a runner killed with SIGKILL never calls stop(): the kernel stops the service
        preexec_fn=_stop_with_runner,
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)

    deadline = time.monotonic() + PRIVATE_SERVICE_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        answer = _answers(endpoint)
        if answer is not None:
            return answer[0], answer[1], endpoint, stop
        time.sleep(0.1)
    tail = (folder / "service.log").read_text(errors="replace")[-500:]
    stop()
    raise EngineUnreachable(
        f"started a private `podman system service` on {endpoint}, but it did not answer: "
        + " ".join(tail.split())
    )


class PodmanEngine(ClientEngine):
    name = "podman"
    library_error = podman_errors.PodmanError
    not_found = podman_errors.NotFound
    image_not_found = podman_errors.ImageNotFound

    def __init__(
        self,
        client: PodmanClient,
        endpoint: str,
        version: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(client, endpoint)
        self._version = version
        self._on_close = on_close

    @classmethod
    def connect(cls) -> PodmanEngine:
        endpoints = candidate_endpoints()
        for endpoint in endpoints:
            answer = _answers(endpoint)
            if answer is not None:
                return cls(answer[0], endpoint, version=answer[1])
        if os.environ.get("CONTAINER_HOST"):
            raise EngineUnreachable(
                f"no Podman service answers at CONTAINER_HOST={endpoints[0]}; start it there, "
                "or unset CONTAINER_HOST to use the default sockets"
            )
        if shutil.which("podman") is None:
            raise EngineUnreachable(
                f"no Podman service answers at {', '.join(endpoints)}, and the podman command "
                "is not installed to start one"
            )
        client, version, endpoint, stop = _start_private_service()
        return cls(client, endpoint, version=version, on_close=stop)

    def version(self) -> str:
        if self._version is None:
            with self.errors("version"):
                self._version = str(self.client.version().get("Version", "unknown"))
        return self._version

    def pull(self, ref: str) -> None:
        # podman-py's plain pull() returns an empty Image on failure; the streamed
        # form carries the registry's error
        with self.errors(f"pulling {ref!r}"):
            for line in self.client.images.pull(ref, stream=True, decode=True):
                if isinstance(line, dict) and line.get("error"):
                    raise EngineError(
                        f"podman: pulling {ref!r} failed: {one_line(str(line['error']))}"
                    )

    def create(self, plan: ContainerPlan) -> str:
        mounts = [
            {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
            for m in plan.mounts
        ]
        options = {
            "command": plan.command,
            "entrypoint": plan.entrypoint,
            "environment": plan.env,
            "user": plan.user,
            "mounts": mounts,
            "labels": plan.labels,
        }
        if not plan.network:
            options["network_mode"] = "none"
        if os.getuid() != 0:
            # rootless Podman maps container uids into the user's subordinate range;
            # keep-id maps the invoking user to itself, so outputs stay the user's
            options["userns_mode"] = "keep-id"
        with self.errors("creating the container"):
            container = self.client.containers.create(
                plan.image_id, **{k: v for k, v in options.items() if v is not None}
            )
        return self.keep(container)

    def close(self) -> None:
        super().close()
        if self._on_close is not None:
            self._on_close()
