"""The ContainerEngine adapter for Docker Engine, over docker-py.

Two docker-py details matter for safety: bind mounts must be docker.types.Mount
objects (a plain dict with "read_only" is accepted and silently mounted
read-write), and wait() returns a dict, not an int.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import Mount

from mdivicomtools.containers import ContainerPlan, EngineError, EngineUnreachable, ImageFacts

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < 300 else text[:297] + "..."


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    try:
        yield
    except docker.errors.DockerException as exc:
        raise EngineError(f"docker: {action} failed: {_short(exc)}") from exc


class DockerEngine:
    name = "docker"

    def __init__(self, client: docker.DockerClient, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        # Container objects from create(): each containers.get() is another API round trip
        self._containers: dict[str, Container] = {}

    @classmethod
    def connect(cls) -> DockerEngine:
        endpoint = os.environ.get("DOCKER_HOST", DEFAULT_ENDPOINT)
        try:
            # from_env() negotiates the API version, which already needs an answer
            client = docker.from_env()
        except docker.errors.DockerException as exc:
            raise EngineUnreachable(
                f"cannot reach Docker Engine at {endpoint}: {_short(exc)}"
            ) from exc
        return cls(client, endpoint)

    def version(self) -> str:
        with _errors("version"):
            return str(self.client.version().get("Version", "unknown"))

    def image(self, ref: str) -> ImageFacts | None:
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker: inspecting image {ref!r} failed: {_short(exc)}") from exc
        return ImageFacts(id=image.id, repo_digests=list(image.attrs.get("RepoDigests") or []))

    def pull(self, ref: str) -> None:
        with _errors(f"pulling {ref!r}"):
            self.client.images.pull(ref)

    def create(self, plan: ContainerPlan) -> str:
        mounts = [
            Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in plan.mounts
        ]
        with _errors("creating the container"):
            container = self.client.containers.create(
                image=plan.image_id,
                command=plan.command,
                entrypoint=plan.entrypoint,
                environment=plan.env,
                user=plan.user,
                mounts=mounts,
                network_mode=None if plan.network else "none",
                labels=plan.labels,
                detach=True,
            )
        self._containers[container.id] = container
        return str(container.id)

    def _get(self, container_id: str) -> Container:
        container = self._containers.get(container_id)
        return container if container is not None else self.client.containers.get(container_id)

    def mounts(self, container_id: str) -> dict[str, bool]:
        with _errors("inspecting the container"):
            container = self._get(container_id)
            container.reload()
            return {m["Destination"]: bool(m["RW"]) for m in container.attrs.get("Mounts", [])}

    def start(self, container_id: str) -> None:
        with _errors("starting the container"):
            self._get(container_id).start()

    def logs(self, container_id: str) -> Iterator[bytes]:
        with _errors("reading logs"):
            yield from self._get(container_id).logs(stream=True, follow=True)

    def all_logs(self, container_id: str) -> bytes:
        with _errors("reading logs"):
            data = self._get(container_id).logs(stream=False)
        return data if isinstance(data, bytes) else b"".join(data)

    def wait(self, container_id: str) -> int:
        with _errors("waiting for the container"):
            return int(self._get(container_id).wait()["StatusCode"])

    def state(self, container_id: str) -> tuple[int | None, bool]:
        with _errors("inspecting the container"):
            container = self._get(container_id)
            container.reload()
            state = container.attrs.get("State", {})
        return state.get("ExitCode"), bool(state.get("OOMKilled"))

    def stop(self, container_id: str, grace_s: int) -> None:
        try:
            self._get(container_id).stop(timeout=grace_s)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker: stopping the container failed: {_short(exc)}") from exc

    def remove(self, container_id: str) -> None:
        try:
            self._get(container_id).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker: removing the container failed: {_short(exc)}") from exc
        finally:
            self._containers.pop(container_id, None)

    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        with _errors("listing containers"):
            found = self.client.containers.list(all=True, filters={"label": label})
        return [(str(c.id), dict(c.labels)) for c in found]

    def close(self) -> None:
        self.client.close()
