"""The ContainerEngine adapter for Docker Engine, over docker-py.

Two docker-py details matter for safety: bind mounts must be docker.types.Mount
objects (a plain dict with "read_only" is accepted and silently mounted
read-write), and wait() returns a dict, not an int (handled in ClientEngine).
GPUs are docker-py DeviceRequests (what `docker run --gpus` sends); Docker
serves them through the NVIDIA container runtime or its hook.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import _create_container_args
from docker.types import DeviceRequest, Mount

from mdivicomtools.common.text import one_line
from mdivicomtools.execution.container.client import ClientEngine
from mdivicomtools.execution.container.engine import (
    EngineError,
    EngineUnreachable,
    GpuSupport,
    engine_reason,
    socket_refusal_fix,
)
from mdivicomtools.execution.container.plan import ContainerPlan
from mdivicomtools.model.container import Gpus

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"
#: the OCI hook Docker Engine runs for `--gpus` device requests (nvidia-container-toolkit)
NVIDIA_HOOK = "nvidia-container-runtime-hook"


def device_requests(gpus: Gpus | None) -> list[DeviceRequest]:
    """The DeviceRequest `docker run --gpus` sends: every GPU, a count, or device ids."""
    if gpus is None:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]


def ssh_fix(endpoint: str, detail: str) -> str | None:
    """The fix for a `DOCKER_HOST=ssh://` that docker-py cannot use, else None (the
    backend's general fix: start the engine).

    The docker command reaches such a host with the system's ssh; docker-py needs
    the paramiko package for any ssh:// address, which mdivicomtools does not
    install, and "start Docker Engine" sent the user to a running engine.
    """
    if not endpoint.startswith("ssh://") or "paramiko" not in detail:
        return None
    host = endpoint[len("ssh://") :].split("/", 1)[0]
    return (
        "docker-py reaches ssh:// hosts only with the paramiko package: `pip install "
        "paramiko` into mdivicom's environment, or forward the engine's socket "
        f"(`ssh -NL /tmp/docker.sock:/var/run/docker.sock ssh://{host}`) and set "
        "DOCKER_HOST=unix:///tmp/docker.sock"
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is anywhere in `exc`'s chain or in the arguments that carry it
    (requests wraps the socket's PermissionError in a tuple of its ConnectionError)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return True
        pending += [item.__cause__, item.__context__, *item.args]
        pending += [arg for arg in item.args if isinstance(arg, tuple) for arg in arg]
    return False


def connect_fix(endpoint: str, exc: BaseException, detail: str) -> str | None:
    """The fix for an engine that did not answer, from the cause; None for the
    backend's general one (start the engine).

    "start Docker Engine" sent a user whom the socket refused (not root, not in
    its group: a service account, a CI job's uid) and one whose DOCKER_HOST was
    no address to an engine that was running all along.
    """
    ssh = ssh_fix(endpoint, detail)
    if ssh is not None:
        return ssh
    if _caused_by(exc, PermissionError):
        return socket_refusal_fix(endpoint, "docker version")
    if "Invalid bind address" in detail:
        return (
            f"DOCKER_HOST={endpoint} is not an address: write unix:///path/to/docker.sock, "
            "tcp://HOST:PORT or ssh://USER@HOST, or unset DOCKER_HOST for the default socket"
        )
    return None


def create_options(plan: ContainerPlan) -> dict[str, Any]:
    """docker-py `containers.create` keywords for `plan` (a pure function: unit-tested)."""
    settings = plan.settings
    options: dict[str, Any] = {
        "image": plan.image_id,
        "command": plan.command,
        "entrypoint": plan.entrypoint,
        "environment": plan.env,
        "user": plan.user,
        "mounts": [
            Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in plan.mounts
        ],
        "network_mode": None if plan.network else "none",
        "labels": plan.labels,
        "detach": True,
        "init": settings.init,
        "cap_drop": plan.cap_drop,
        "security_opt": ["no-new-privileges"] if settings.no_new_privileges else None,
    }
    if settings.capabilities:
        options["cap_add"] = list(settings.capabilities)
    if settings.read_only_rootfs:
        options["read_only"] = True
        options["tmpfs"] = {"/tmp": "rw,nosuid,nodev,mode=1777"}
    if settings.memory:
        # swap counts against the same limit, so the limit is a limit and not a slowdown
        options["mem_limit"] = settings.memory
        options["memswap_limit"] = settings.memory
    if settings.cpus:
        options["nano_cpus"] = round(settings.cpus * 1e9)
    if settings.shm_size:
        options["shm_size"] = settings.shm_size
    if settings.pids:
        options["pids_limit"] = settings.pids
    requests = device_requests(settings.gpus)
    if requests:
        options["device_requests"] = requests
    return options


class DockerEngine(ClientEngine):
    name = "docker"
    library_error = docker.errors.DockerException
    not_found = docker.errors.NotFound
    image_not_found = docker.errors.ImageNotFound

    def __init__(self, client: Any, endpoint: str, version: str | None = None) -> None:
        super().__init__(client, endpoint)
        self._version = version

    @classmethod
    def connect(cls) -> DockerEngine:
        """Connect with one /version request: docker-py's own negotiation asks once for
        the API version and `version()` would ask again for the engine's version."""
        endpoint = os.environ.get("DOCKER_HOST", DEFAULT_ENDPOINT)
        try:
            client = docker.from_env(version=docker.constants.MINIMUM_DOCKER_API_VERSION)
            answer = client.api.version(api_version=False)
            # what version="auto" would have chosen, from the same answer
            client.api._version = str(answer["ApiVersion"])
        except (docker.errors.DockerException, OSError, KeyError) as exc:
            detail = f"no ApiVersion in {answer!r}" if isinstance(exc, KeyError) else str(exc)
            reason = detail if isinstance(exc, KeyError) else engine_reason(exc)
            raise EngineUnreachable(
                f"cannot reach Docker Engine at {endpoint}: {one_line(reason)}",
                fix=connect_fix(endpoint, exc, detail),
            ) from exc
        return cls(client, endpoint, version=str(answer.get("Version", "unknown")))

    def version(self) -> str:
        if self._version is None:
            with self.errors("version"):
                self._version = str(self.client.version().get("Version", "unknown"))
        return self._version

    def pull(self, ref: str) -> None:
        with self.errors(f"pulling {ref!r}"):
            self.client.images.pull(ref)

    def create(self, plan: ContainerPlan) -> str:
        # containers.create() inspects the new container at once; the mount check
        # inspects it anyway, so create through the API and let that be the only one
        with self.errors("creating the container"):
            options = {**create_options(plan), "version": self.client.api.api_version}
            answer = self.client.api.create_container(**_create_container_args(options))
            container = self.client.containers.prepare_model({"Id": answer["Id"]})
        return self.keep(container)

    def log_response(self, container_id: str, follow: bool) -> Any:
        # docker-py's logs() drops each frame's stream type; ask the API directly.
        # No read timeout: a quiet container is not a dead connection.
        api = self.client.api
        response = api._get(
            api._url("/containers/{0}/logs", container_id),
            params={"stdout": 1, "stderr": 1, "follow": int(follow)},
            stream=True,
            timeout=None,
        )
        api._raise_for_status(response)
        return response

    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        # containers.list() inspects every container it lists; the list has the labels
        with self.errors("listing containers"):
            found = self.client.api.containers(all=True, filters={"label": label})
        return [(str(c["Id"]), dict(c.get("Labels") or {})) for c in found]

    def gpu_support(self) -> GpuSupport:
        with self.errors("reading the engine info"):
            runtimes = self.client.info().get("Runtimes") or {}
        if "nvidia" in runtimes:
            return GpuSupport(available=True, detail="the nvidia runtime is registered")
        local = self.endpoint.startswith("unix://")
        if local and shutil.which(NVIDIA_HOOK):
            return GpuSupport(available=True, detail=f"{NVIDIA_HOOK} is installed")
        return GpuSupport(
            available=False,
            detail="no nvidia runtime registered"
            + (f" and no {NVIDIA_HOOK} installed" if local else "")
            + "; install nvidia-container-toolkit on the engine's host",
        )

    def save(self, refs: list[str], path: Path) -> None:
        api = self.client.api
        with self.errors(f"saving {', '.join(refs)}"):
            response = api._get(api._url("/images/get"), params={"names": refs}, stream=True)
            api._raise_for_status(response)
            with path.open("wb") as sink:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    sink.write(chunk)

    def load(self, path: Path) -> list[str]:
        # the load stream names what was loaded ("Loaded image: name:tag", or an id for
        # an untagged image); Image.tags would list every other tag of the same id too
        loaded = []
        with self.errors(f"loading {str(path)!r}"), path.open("rb") as source:
            for message in self.client.api.load_image(source):
                if "error" in message:
                    raise EngineError(f"docker: loading {str(path)!r} failed: {message['error']}")
                text = str(message.get("stream", "")).strip()
                for prefix in ("Loaded image: ", "Loaded image ID: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix) :])
        if not loaded:
            raise EngineError(f"docker: {str(path)!r} held no image")
        return loaded
