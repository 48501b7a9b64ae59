"""The images of container plugins, per engine: list, pull, save and load.

A site without a registry (an air-gapped cluster) carries images in as tar
files: `images save` on a connected machine, `images load` on the cluster.
`images list` answers the question an operator has before a batch: which
plugin images does each engine have, and exactly which ones (id, digest).
The engine work goes through each ContainerBackend's ContainerEngine, so the
commands behave the same on Docker and Podman.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from mdivicomtools.common.home import expand_home
from mdivicomtools.common.units import is_positive
from mdivicomtools.discovery import discover
from mdivicomtools.errors import MdivicomError, UsageError
from mdivicomtools.execution.container.engine import ContainerEngine, EngineError, ImageFacts
from mdivicomtools.execution.container.runtime import ContainerBackend, bounded_pull
from mdivicomtools.execution.registry import BackendRegistry
from mdivicomtools.hooks.manager import load_hooks


class ImageRow(msgspec.Struct, kw_only=True):
    """One line of `mdivicom images list`: one plugin image on one engine."""

    image: str
    plugins: list[str]
    engine: str
    present: bool
    id: str | None = None
    repo_digests: list[str] = []
    size: int | None = None
    #: why the engine could not be asked (unreachable), else None
    problem: str | None = None


class ImagesNotManaged(UsageError):
    """The chosen container backend is not a ContainerBackend (a site's own, say): it
    runs containers but mdivicomtools cannot ask it about images."""

    def __init__(self, backend: str) -> None:
        super().__init__(
            f"backend {backend!r} runs containers but does not manage images "
            "through mdivicomtools; use its own tools"
        )
        self.backend = backend


class ImageOperationFailed(MdivicomError):
    """An engine refused a pull, save or load; the message names the image and why."""


def plugin_images() -> dict[str, list[str]]:
    """Image reference -> refs of the usable container plugins that use it."""
    images: dict[str, list[str]] = {}
    for record in discover().plugins:
        if record.spec is not None and record.spec.container is not None:
            images.setdefault(record.spec.container.image, []).append(record.ref)
    return images


def _chosen_backend(registry: BackendRegistry, requested: str | None) -> ContainerBackend:
    """The engine a container run with `--backend requested` would use (None: the
    default, MDIVICOM_BACKEND or the user config, as strict as for `run`)."""
    backend = registry.choose(requested, "container")
    if not isinstance(backend, ContainerBackend):
        raise ImagesNotManaged(backend.name)
    return backend


def _container_backends(registry: BackendRegistry, requested: str | None) -> list[ContainerBackend]:
    if requested is not None:
        return [_chosen_backend(registry, requested)]
    return [
        backend
        for _, backend in sorted(registry.backends.items())
        if isinstance(backend, ContainerBackend) and backend.name not in registry.conflicts
    ]


@contextlib.contextmanager
def _engine(
    requested: str | None, warn: Callable[[str], None] | None = None
) -> Iterator[tuple[str, ContainerEngine]]:
    """The engine `--backend` names (default: as for `run`), closed afterwards;
    `warn` hears why the user config's backend was passed over, as a run says."""
    with load_hooks().get_backends() as registry:
        backend = _chosen_backend(registry, requested)
        if warn is not None:
            for note in registry.notes:
                warn(note)
        yield backend.name, backend.engine()


def list_images(requested: str | None = None) -> list[ImageRow]:
    """Every plugin image on every container engine (or the one `requested`)."""
    images = plugin_images()
    rows: list[ImageRow] = []
    with load_hooks().get_backends() as registry:
        for backend in _container_backends(registry, requested):
            status = registry.availability(backend.name)
            for ref, plugins in sorted(images.items()):
                row = ImageRow(
                    image=ref, plugins=sorted(plugins), engine=backend.name, present=False
                )
                if not status.available:
                    row.problem = status.reason
                else:
                    try:
                        facts = backend.engine().image(ref)
                    except EngineError as exc:
                        row.problem = str(exc)
                        facts = None
                    if facts is not None:
                        row.present = True
                        row.id = facts.id
                        row.repo_digests = list(facts.repo_digests)
                        row.size = facts.size
                rows.append(row)
    return rows


def image_on_engine(ref: str, requested: str | None = None) -> tuple[str, ImageFacts | None]:
    """The engine `requested` chooses (default: as for `run`) and what it has of `ref`
    (None: not there). For checks that must not call an image present because a dry
    run happened not to need it. Raises UsageError or EngineError when no engine answers."""
    with _engine(requested) as (name, engine):
        return name, engine.image(ref)


def _refs_or_plugin_images(refs: list[str]) -> list[str]:
    if refs:
        return list(dict.fromkeys(refs))
    images = sorted(plugin_images())
    if not images:
        raise UsageError(
            "no image given and no container plugin is installed; name images, e.g. "
            "`mdivicom images pull localhost/tool:1`"
        )
    return images


def pull_images(
    refs: list[str],
    requested: str | None = None,
    timeout: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[str, list[str]]:
    """Pull each image (every plugin image without `refs`); returns the engine and the
    pulled references. Raises ImageOperationFailed naming every image that failed.

    `timeout` bounds each pull: a registry that accepts the connection and never
    answers would otherwise hold the command for as long as the engine waits.
    """
    if timeout is not None and not is_positive(timeout):
        raise UsageError(f"--timeout must be a positive, finite number of seconds, got {timeout:g}")
    wanted = _refs_or_plugin_images(refs)
    with _engine(requested, warn) as (name, engine):
        failed = []
        for ref in wanted:
            try:
                bounded_pull(engine, ref, timeout, hint="check the registry, or raise --timeout")
            except EngineError as exc:
                failed.append(str(exc))
        if failed:
            raise ImageOperationFailed("; ".join(failed))
        return name, wanted


def save_images(
    refs: list[str],
    path: Path,
    requested: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> str:
    """Write `refs` into one tar file at `path`, for `load` on another machine.

    The tar is written next to `path` and renamed into place only when complete,
    so a failed or interrupted save never leaves a truncated file (or replaces a
    good one). Returns the engine's name.
    """
    if not refs:
        raise UsageError(
            "name at least one image to save, e.g. `mdivicom images save IMAGE -o FILE.tar`"
        )
    target = expand_home(path).absolute()
    if not target.parent.is_dir():
        # a parent that is a file was reported as missing, which sent users looking for it
        state = "is not a folder" if target.parent.exists() else "does not exist"
        raise UsageError(f"-o {str(path)!r}: the folder {str(target.parent)!r} {state}")
    if target.is_dir():
        raise UsageError(f"-o {str(path)!r} is a folder; name the tar file to write")
    with _engine(requested, warn) as (name, engine):
        missing = [ref for ref in refs if engine.image(ref) is None]
        if missing:
            raise UsageError(
                f"{', '.join(missing)} not on {engine.name}; pull or load it first "
                "(`mdivicom images list` shows what each engine has)"
            )
        # a hidden name in the same folder: renamed into place only when complete
        partial = target.parent / f".{target.name}.{os.getpid()}.partial"
        try:
            engine.save(list(dict.fromkeys(refs)), partial)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return name


def load_images(
    path: Path, requested: str | None = None, warn: Callable[[str], None] | None = None
) -> tuple[str, list[str]]:
    """Load a tar made by `images save` (or `docker save` / `podman save`); returns the
    engine and the image names it reported."""
    source = expand_home(path)
    if not source.is_file():
        raise UsageError(f"{str(path)!r} is not a file; give the tar that `images save` wrote")
    with _engine(requested, warn) as (name, engine):
        try:
            return name, engine.load(source)
        except EngineError as exc:
            raise ImageOperationFailed(str(exc)) from None


def ensure_pinned_image(ref: str, requested: str | None, timeout: float | None) -> str | None:
    """Pull an image pinned by digest unless the engine has it; None when it is there,
    else the problem. For `rerun`, which tries each recorded digest in turn before its
    run starts (a run's own pulls are part of the run and recorded)."""
    with _engine(requested) as (name, engine):
        try:
            if engine.image(ref) is None:
                bounded_pull(engine, ref, timeout)
            if engine.image(ref) is not None:
                return None
        except EngineError as exc:
            return f"image {ref!r} (pulled by digest): {exc}"
        return f"image {ref!r} is not on {name} after pulling it"
