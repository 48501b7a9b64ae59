"""Registers the docker backend with mdivicomtools, as any third-party backend would."""

from __future__ import annotations

from mdivicomtools import hookimpl
from mdivicomtools.execution.base import ExecutionBackend
from mdivicomtools.execution.container.engine import ContainerEngine
from mdivicomtools.execution.container.runtime import ContainerBackend

FIX = (
    "start Docker Engine (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at it; "
    "`docker version` must answer for the user running mdivicom"
)


def _connect() -> ContainerEngine:
    # imported here: docker-py is only needed once a container actually runs
    from mdivicomtools_docker.engine import DockerEngine

    return DockerEngine.connect()


@hookimpl
def mdivicom_execution_backends() -> list[ExecutionBackend]:
    return [ContainerBackend("docker", _connect, fix=FIX)]
