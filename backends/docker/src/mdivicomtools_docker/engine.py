"""The ContainerEngine adapter for Docker Engine, over docker-py.

Two docker-py details matter for safety: bind mounts must be docker.types.Mount
objects (a plain dict with "read_only" is accepted and silently mounted
read-write), and wait() returns a dict, not an int (handled in ClientEngine).
"""

from __future__ import annotations

import os

import docker
import docker.errors
from docker.types import Mount

from mdivicomtools.common.text import one_line
from mdivicomtools.execution.container.client import ClientEngine
from mdivicomtools.execution.container.engine import EngineUnreachable
from mdivicomtools.execution.container.plan import ContainerPlan

DEFAULT_ENDPOINT = "unix:///var/run/docker.sock"


class DockerEngine(ClientEngine):
    name = "docker"
    library_error = docker.errors.DockerException
    not_found = docker.errors.NotFound
    image_not_found = docker.errors.ImageNotFound

    @classmethod
    def connect(cls) -> DockerEngine:
        endpoint = os.environ.get("DOCKER_HOST", DEFAULT_ENDPOINT)
        try:
            # from_env() negotiates the API version, which already needs an answer
            client = docker.from_env()
        except docker.errors.DockerException as exc:
            raise EngineUnreachable(
                f"cannot reach Docker Engine at {endpoint}: {one_line(str(exc))}"
            ) from exc
        return cls(client, endpoint)

    def version(self) -> str:
        with self.errors("version"):
            return str(self.client.version().get("Version", "unknown"))

    def pull(self, ref: str) -> None:
        with self.errors(f"pulling {ref!r}"):
            self.client.images.pull(ref)

    def create(self, plan: ContainerPlan) -> str:
        mounts = [
            Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in plan.mounts
        ]
        with self.errors("creating the container"):
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
        return self.keep(container)
