"""What the docker-py and podman-py adapters share.

podman-py mirrors docker-py's object model (client.containers / client.images,
Container.reload/start/logs/stop/remove, attrs), so everything after creating a
container is written once here against that shape, with each library's own
exception classes plugged in. The adapters keep what truly differs: connecting,
the version, pulling and the spelling of mounts at create time. Neither library
is imported here; the core stays free of both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mdivicomtools.execution.container.engine import EngineError, ImageFacts, engine_reason
from mdivicomtools.execution.container.logstream import Frame, read_frames


class ClientEngine:
    """A ContainerEngine over a docker-py-shaped client.

    Subclasses set `name`, the exception classes and implement `connect`,
    `version`, `pull`, `create` (which should call `self.keep(container)`) and
    `log_response`.
    """

    name: str = ""
    #: the library's base exception, its "no such container" and "no such image"
    library_error: type[BaseException] = Exception
    not_found: type[BaseException] = LookupError
    image_not_found: type[BaseException] = LookupError

    def __init__(self, client: Any, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        # Container objects from create(): each containers.get() is another API round trip
        self._containers: dict[str, Any] = {}

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except EngineError:
            raise
        except (self.library_error, OSError) as exc:
            raise EngineError(f"{self.name}: {action} failed: {engine_reason(exc)}") from exc

    def keep(self, container: Any) -> str:
        self._containers[container.id] = container
        return str(container.id)

    def _get(self, container_id: str) -> Any:
        container = self._containers.get(container_id)
        return container if container is not None else self.client.containers.get(container_id)

    def image(self, ref: str) -> ImageFacts | None:
        try:
            image = self.client.images.get(ref)
        except self.image_not_found:
            return None
        except self.library_error as exc:
            raise EngineError(
                f"{self.name}: inspecting image {ref!r} failed: {engine_reason(exc)}"
            ) from exc
        return ImageFacts(
            id=image.id,
            repo_digests=list(image.attrs.get("RepoDigests") or []),
            size=image.attrs.get("Size"),
        )

    def mounts(self, container_id: str) -> dict[str, bool]:
        with self.errors("inspecting the container"):
            container = self._get(container_id)
            container.reload()
            return {m["Destination"]: bool(m["RW"]) for m in container.attrs.get("Mounts", [])}

    def start(self, container_id: str) -> None:
        with self.errors("starting the container"):
            self._get(container_id).start()

    def log_response(self, container_id: str, follow: bool) -> Any:
        """The engine's streamed `/containers/{id}/logs` answer, status checked.

        Implemented by each adapter: neither library hands out the frames with
        their stream type, which the run log needs to keep lines whole.
        """
        raise NotImplementedError

    def logs(self, container_id: str) -> Iterator[Frame]:
        with (
            self.errors("reading logs"),
            contextlib.closing(self.log_response(container_id, follow=True)) as response,
        ):
            yield from read_frames(response.raw)

    def all_logs(self, container_id: str) -> Iterator[Frame]:
        # streamed, as logs() is: the stored log is as large as all the tool printed
        with (
            self.errors("reading logs"),
            contextlib.closing(self.log_response(container_id, follow=False)) as response,
        ):
            yield from read_frames(response.raw)

    def wait(self, container_id: str) -> int:
        with self.errors("waiting for the container"):
            status = self._get(container_id).wait()
        # docker-py answers {"StatusCode": n, "Error": ...}, podman-py a bare int
        return int(status["StatusCode"] if isinstance(status, dict) else status)

    def state(self, container_id: str) -> tuple[int | None, bool]:
        with self.errors("inspecting the container"):
            container = self._get(container_id)
            container.reload()
            state = container.attrs.get("State", {})
        return state.get("ExitCode"), bool(state.get("OOMKilled"))

    def stop(self, container_id: str, grace_s: int) -> None:
        # suppress inside errors(): NotFound is also the library's base error
        with self.errors("stopping the container"), contextlib.suppress(self.not_found):
            self._get(container_id).stop(timeout=grace_s)

    def remove(self, container_id: str) -> None:
        try:
            with self.errors("removing the container"), contextlib.suppress(self.not_found):
                # v=True: an image's VOLUME gets an anonymous volume per container, holding
                # what the tool wrote there; without it each run left one behind
                self._get(container_id).remove(force=True, v=True)
        finally:
            self._containers.pop(container_id, None)

    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        with self.errors("listing containers"):
            found = self.client.containers.list(all=True, filters={"label": label})
        return [(str(c.id), dict(c.labels or {})) for c in found]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
