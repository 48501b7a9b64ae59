"""Registers the podman backend with mdivicomtools, as any third-party backend would."""

from __future__ import annotations

from mdivicomtools import hookimpl
from mdivicomtools.execution.base import ExecutionBackend
from mdivicomtools.execution.container.engine import ContainerEngine
from mdivicomtools.execution.container.runtime import ContainerBackend

FIX = (
    "start the Podman API service (`systemctl --user start podman.socket`, or as root "
    "`podman system service --time=0 unix:///run/podman/podman.sock &`), point CONTAINER_HOST "
    "at it, or install podman so mdivicom can start a private service"
)


def _connect() -> ContainerEngine:
    # imported here: podman-py is only needed once a container actually runs
    from mdivicomtools_podman.engine import PodmanEngine

    return PodmanEngine.connect()


@hookimpl
def mdivicom_execution_backends() -> list[ExecutionBackend]:
    return [ContainerBackend("podman", _connect, fix=FIX)]
