"""The engine-specific operations a container backend needs, as a Protocol.

An engine distribution (mdivicomtools-docker, mdivicomtools-podman) supplies
one ContainerEngine, a thin adapter over its client library; everything that
must be the same on every engine is in `runtime` and `plan`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import msgspec

from mdivicomtools.errors import MdivicomError
from mdivicomtools.execution.container.logstream import Frame
from mdivicomtools.execution.container.plan import ContainerPlan


class EngineError(MdivicomError):
    """An engine call failed; the message says which call and why."""


class EngineUnreachable(EngineError):
    """No engine answers at the expected endpoint; `fix` says how, when the cause is known."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class ImageFacts(msgspec.Struct, kw_only=True):
    id: str
    repo_digests: list[str] = []
    size: int | None = None


class GpuSupport(msgspec.Struct, kw_only=True, frozen=True):
    """Whether an engine can serve GPU requests, and what that was judged from."""

    available: bool
    detail: str


class ContainerEngine(Protocol):
    """The engine-specific operations; each raises EngineError on failure."""

    name: str
    endpoint: str

    def version(self) -> str: ...
    def image(self, ref: str) -> ImageFacts | None: ...
    def pull(self, ref: str) -> None: ...
    def create(self, plan: ContainerPlan) -> str: ...
    def mounts(self, container_id: str) -> dict[str, bool]: ...
    def start(self, container_id: str) -> None: ...
    def logs(self, container_id: str) -> Iterator[Frame]: ...
    def all_logs(self, container_id: str) -> list[Frame]: ...
    def wait(self, container_id: str) -> int: ...
    def state(self, container_id: str) -> tuple[int | None, bool]: ...
    def stop(self, container_id: str, grace_s: int) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]: ...
    def close(self) -> None: ...
    def gpu_support(self) -> GpuSupport: ...
    def save(self, refs: list[str], path: Path) -> None: ...
    def load(self, path: Path) -> list[str]: ...
