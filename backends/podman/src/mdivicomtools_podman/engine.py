"""The ContainerEngine adapter for Podman, over podman-py and the Podman API service.

Where no service socket answers but the `podman` command exists, a private
`podman system service` is started on a socket in a temporary folder for the
lifetime of the run and stopped afterwards, so Podman works without any set-up.
podman-py details that matter: bind mounts take lower-case keys with
"read_only" (Docker's spelling is accepted and silently mounted read-write),
wait() returns an int, and image ids are bare hex. podman-py ignores
`nano_cpus` and refuses `tmpfs`, so CPUs go in as a CFS quota and /tmp as a
tmpfs mount; GPUs are CDI device names (`nvidia.com/gpu=all`), which need a CDI
spec on the engine's host (`nvidia-ctk cdi generate`). wait() polls libpod
every 250 ms unless told otherwise, a quarter of a small container's run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podman import PodmanClient
from podman import api as podman_api
from podman import errors as podman_errors

from mdivicomtools.common.platform import die_with_parent
from mdivicomtools.common.text import one_line
from mdivicomtools.execution.container.client import ClientEngine
from mdivicomtools.execution.container.engine import (
    EngineError,
    EngineUnreachable,
    GpuSupport,
    refuses_this_user,
    socket_refusal_fix,
)
from mdivicomtools.execution.container.plan import ContainerPlan
from mdivicomtools.model.container import Gpus
from mdivicomtools_podman.service_folder import ServiceFolder

ROOTFUL_SOCKET = "unix:///run/podman/podman.sock"
PRIVATE_SERVICE_WAIT_S = 20.0
#: how long a service may take to answer /_ping (connect, read): one that accepts and
#: never answers hung every podman command, `backends list` and `--timeout` runs too
PING_TIMEOUT_S = (3.0, 5.0)
#: how often libpod checks whether the container has exited (podman-py's default: 250ms)
WAIT_INTERVAL = "10ms"
#: CFS period for a CPU limit; quota = cpus * period (what `podman run --cpus` does)
CPU_PERIOD_US = 100_000
#: where CDI specs live (the CDI specification's default folders)
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
CDI_GPU_KIND = "nvidia.com/gpu"


def cdi_devices(gpus: Gpus | None) -> list[str]:
    """CDI device names for a GPU request; a count N means the first N GPUs (0..N-1),
    since CDI names devices and cannot ask for "any N"."""
    if gpus is None:
        return []
    if gpus == "all":
        return [f"{CDI_GPU_KIND}=all"]
    if isinstance(gpus, int):
        return [f"{CDI_GPU_KIND}={index}" for index in range(gpus)]
    return [f"{CDI_GPU_KIND}={device}" for device in gpus]


def create_options(plan: ContainerPlan, rootless: bool) -> dict[str, Any]:
    """podman-py `containers.create` keywords for `plan` (a pure function: unit-tested)."""
    settings = plan.settings
    mounts: list[dict[str, Any]] = [
        {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
        for m in plan.mounts
    ]
    options: dict[str, Any] = {
        "command": plan.command,
        # podman-py drops an empty list from the request, which left the image's
        # ENTRYPOINT in place; libpod reads [""] as none, like `podman run --entrypoint ""`
        "entrypoint": [""] if plan.entrypoint == [] else plan.entrypoint,
        "environment": plan.env,
        "user": plan.user,
        "mounts": mounts,
        "labels": plan.labels,
        "init": settings.init,
        "cap_drop": plan.cap_drop,
        "no_new_privileges": settings.no_new_privileges,
    }
    if not plan.network:
        options["network_mode"] = "none"
    if rootless:
        # rootless Podman maps container uids into the user's subordinate range;
        # keep-id maps the invoking user to itself, so outputs stay the user's
        options["userns_mode"] = "keep-id"
    if settings.capabilities:
        options["cap_add"] = list(settings.capabilities)
    if settings.read_only_rootfs:
        options["read_only"] = True
        mounts.append({"type": "tmpfs", "source": "tmpfs", "target": "/tmp"})
    if settings.memory:
        options["mem_limit"] = settings.memory
        options["memswap_limit"] = settings.memory
    if settings.cpus:
        options["cpu_period"] = CPU_PERIOD_US
        options["cpu_quota"] = round(settings.cpus * CPU_PERIOD_US)
    if settings.shm_size:
        options["shm_size"] = settings.shm_size
    if settings.pids:
        options["pids_limit"] = settings.pids
    devices = cdi_devices(settings.gpus)
    if devices:
        options["devices"] = devices
    return {k: v for k, v in options.items() if v is not None}


def cdi_gpu_specs(folders: tuple[str, ...] | None = None) -> list[Path]:
    """CDI spec files that define the nvidia.com/gpu kind."""
    found = []
    for folder in folders if folders is not None else CDI_SPEC_DIRS:
        base = Path(folder)
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json"):
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if CDI_GPU_KIND in text:
                found.append(path)
    return found


def candidate_endpoints() -> list[str]:
    """Where a Podman service may listen: CONTAINER_HOST alone when set (as for the
    podman command itself), else the rootful socket, then the user's rootless one."""
    if os.environ.get("CONTAINER_HOST"):
        return [os.environ["CONTAINER_HOST"]]
    endpoints = [ROOTFUL_SOCKET]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    endpoints.append(f"unix://{runtime_dir}/podman/podman.sock")
    return list(dict.fromkeys(endpoints))


#: how long the ssh probe of an ssh:// CONTAINER_HOST may take (connect, log in, run `true`)
SSH_PROBE_TIMEOUT_S = 15.0


def ssh_problem(endpoint: str) -> str | None:
    """Why an `ssh://` endpoint cannot be reached, or None when ssh logs in there.

    podman-py tunnels through `ssh -L` and waits up to 300 s for the tunnel's
    socket, without looking whether ssh has already given up: a refused port, an
    unknown host or a refused key held every command (`backends list` too) for
    five minutes. One `ssh ... true` with BatchMode (no prompt) and a connect
    timeout says the same in seconds.
    """
    netloc = urllib.parse.urlparse(endpoint.replace("http+ssh://", "ssh://", 1)).netloc
    command = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
               "-o", "StrictHostKeyChecking=no", f"ssh://{netloc}", "true"]  # fmt: skip
    try:
        probe = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SSH_PROBE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        return "the ssh command is not installed"
    except subprocess.TimeoutExpired:
        return f"ssh to {netloc} did not log in within {SSH_PROBE_TIMEOUT_S:g} s"
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
    return f"ssh to {netloc} failed: {one_line(last)}"


def _answers(endpoint: str) -> tuple[PodmanClient, str | None] | None:
    """A client for `endpoint` and the Podman version, if a service answers there.

    The version comes from the _ping response's Server header ("Libpod/4.3.1"):
    Podman's /version endpoint takes a third of a second, longer than a small
    container's whole run.
    """
    if endpoint.startswith("unix://"):
        try:
            if not Path(endpoint[len("unix://") :]).exists():
                return None
        except OSError:
            # in a folder this user may not enter: another user's XDG_RUNTIME_DIR, as
            # `sudo -u` and `su` leave it, made the backend's availability() raise
            return None
    if endpoint.startswith(("ssh://", "http+ssh://")):
        problem = ssh_problem(endpoint)
        if problem is not None:
            raise EngineUnreachable(
                f"no Podman service answers at CONTAINER_HOST={endpoint}: {problem}",
                fix="check the host, port and user in CONTAINER_HOST and that `ssh` logs in "
                "there without a prompt (a key in ssh-agent or ~/.ssh), or unset "
                "CONTAINER_HOST to use the default sockets",
            )
    try:
        client = PodmanClient(base_url=endpoint)
    except ValueError as exc:  # podman-py refuses the URL itself (CONTAINER_HOST=garbage)
        raise EngineUnreachable(
            f"CONTAINER_HOST={endpoint} is not an address of a Podman service: {exc}",
            fix="set CONTAINER_HOST to unix:///PATH/podman.sock, ssh://USER@HOST/PATH or "
            "tcp://HOST:PORT, or unset it to use the default sockets",
        ) from None
    try:
        response = client.api.get("/_ping", timeout=PING_TIMEOUT_S)
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
    held = ServiceFolder()
    folder = held.path
    endpoint = f"unix://{folder / 'podman.sock'}"
    log = (folder / "service.log").open("wb")
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", endpoint],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # conmon writes a file named `oom` into its working directory when a
        # container is OOM-killed: not into the user's
        cwd=folder,
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
        held.remove()

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
        + " ".join(tail.split()),
        fix=service_failure_fix(tail),
    )


def service_failure_fix(log_tail: str) -> str | None:
    """The fix for a private service that would not start, when its log names one.

    Rootless Podman needs newuidmap/newgidmap, which Debian and Ubuntu ship in
    the `uidmap` package, not with podman: "install podman" would send the user
    to reinstall what they have. It needs a home folder and a runtime folder of
    the user's own too, which a service account or `sudo -u` often lacks.
    """
    if "newuidmap" in log_tail or "newgidmap" in log_tail:
        return (
            "install the uidmap package (e.g. `apt-get install uidmap`), which provides the "
            "newuidmap and newgidmap that rootless Podman needs"
        )
    if "XDG_RUNTIME_DIR" in log_tail or "homedir" in log_tail or "cannot resolve" in log_tail:
        # `sudo -u`, `su` and service accounts: another user's XDG_RUNTIME_DIR, no HOME
        return (
            "rootless Podman keeps its state in this user's own folders: run with HOME set "
            "to a folder this user owns and XDG_RUNTIME_DIR unset (or set to one it owns, "
            "such as /run/user/UID from a login session), or point CONTAINER_HOST at a "
            "running Podman service this user may use"
        )
    return None


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
            if refuses_this_user(endpoints[0]):
                raise EngineUnreachable(
                    f"the Podman service at CONTAINER_HOST={endpoints[0]} refuses this user",
                    fix=socket_refusal_fix(endpoints[0], "podman --remote version"),
                )
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
        # containers.create() inspects the new container at once; the mount check
        # inspects it anyway, so post podman-py's own payload and skip that request
        options = create_options(plan, rootless=os.getuid() != 0)
        manager = self.client.containers
        with self.errors("creating the container"):
            payload = manager._render_payload({"image": plan.image_id, **options})
            response = self.client.api.post(
                "/containers/create",
                headers={"content-type": "application/json"},
                data=podman_api.prepare_body(payload),
            )
            response.raise_for_status(not_found=podman_errors.ImageNotFound)
            container = manager.prepare_model({"Id": response.json()["Id"]})
        return self.keep(container)

    def wait(self, container_id: str) -> int:
        with self.errors("waiting for the container"):
            return int(self._get(container_id).wait(interval=WAIT_INTERVAL))

    def log_response(self, container_id: str, follow: bool) -> Any:
        response = self.client.api.get(
            f"/containers/{container_id}/logs",
            params={"stdout": True, "stderr": True, "follow": follow},
            stream=True,
        )
        response.raise_for_status()
        return response

    def gpu_support(self) -> GpuSupport:
        if not self.endpoint.startswith("unix://"):
            return GpuSupport(
                available=False,
                detail=f"CDI specs cannot be checked on a remote engine ({self.endpoint})",
            )
        specs = cdi_gpu_specs()
        if specs:
            return GpuSupport(
                available=True,
                detail=f"CDI spec for {CDI_GPU_KIND}: {', '.join(str(p) for p in specs)}",
            )
        return GpuSupport(
            available=False,
            detail=f"no CDI spec for {CDI_GPU_KIND} in {' or '.join(CDI_SPEC_DIRS)}; generate "
            "one with `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`",
        )

    def save(self, refs: list[str], path: Path) -> None:
        with self.errors(f"saving {', '.join(refs)}"):
            response = self.client.api.get(
                "/images/export",
                params={"references": refs, "format": "docker-archive", "compress": False},
                stream=True,
            )
            response.raise_for_status()
            with path.open("wb") as sink:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    sink.write(chunk)

    def load(self, path: Path) -> list[str]:
        with self.errors(f"loading {str(path)!r}"), path.open("rb") as source:
            response = self.client.api.post(
                "/images/load", data=source, headers={"Content-type": "application/x-tar"}
            )
            response.raise_for_status()
            names = list(response.json().get("Names") or [])
        if not names:
            raise EngineError(f"podman: {str(path)!r} held no image")
        return names

    def close(self) -> None:
        super().close()
        if self._on_close is not None:
            self._on_close()
