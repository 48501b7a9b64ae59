"""The ExecutionBackend protocol and the choice of backend for a run.

A backend is anything with a name, the plugin kinds it runs, an availability
check and an `execute` method. Backends arrive through the
`mdivicom_execution_backends` hook, so the built-in python backend, the docker
and podman distributions and a site's own backend are found the same way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import msgspec

from mdivicomtools.errors import UsageError

if TYPE_CHECKING:
    from mdivicomtools.hooks import HookManager
    from mdivicomtools.run_types import RunOutcome, RunRequest
    from mdivicomtools.runlog import RunLog

BACKEND_ENV = "MDIVICOM_BACKEND"
#: container backends tried in this order by `--backend auto`
CONTAINER_PREFERENCE = ("docker", "podman")


class Availability(msgspec.Struct, kw_only=True):
    """Whether a backend can run now; when not, why and how to fix it."""

    available: bool
    engine: str | None = None
    version: str | None = None
    reason: str | None = None
    fix: str | None = None


@runtime_checkable
class ExecutionBackend(Protocol):
    """What the runner needs from a backend.

    `execute` fills in the outcome: status "succeeded" or "failed" (or
    "timed_out" when request.timeout expired), exit_code, error, result and,
    for containers, `outcome.container`. On KeyboardInterrupt it must stop and
    clean up whatever it started, then let the exception propagate; the runner
    records the run as interrupted. Output goes to `log`.
    """

    name: str
    kinds: frozenset[str]

    def availability(self) -> Availability: ...

    def execute(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None: ...


class BackendUnavailable(UsageError):
    """The chosen backend is not installed, not reachable or cannot run this kind."""


def collect_backends(hooks: HookManager) -> dict[str, ExecutionBackend]:
    backends: dict[str, ExecutionBackend] = {}
    results, _errors = hooks.call_each("mdivicom_execution_backends")
    for _module, provided in results:
        for backend in provided or ():
            backends.setdefault(backend.name, backend)
    return backends


def _preferences(kind: str) -> list[str]:
    """Backend names in the order `auto` tries them.

    Python plugins run on python (or MDIVICOM_BACKEND when that backend runs
    python plugins); only container plugins consult the user config file.
    """
    preferences = [os.environ.get(BACKEND_ENV, "")]
    if kind == "python":
        preferences.append("python")
    else:
        from mdivicomtools.userconfig import configured_backend

        preferences.append(configured_backend() or "")
        preferences.extend(CONTAINER_PREFERENCE)
    return [name for name in preferences if name and name != "auto"]


def close_backends(backends: dict[str, ExecutionBackend]) -> None:
    """Let backends release what they hold (a connection, a private Podman service)."""
    for backend in backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def choose_backend(
    requested: str | None, kind: str, backends: dict[str, ExecutionBackend]
) -> ExecutionBackend:
    """Resolve `--backend` for a plugin kind (INTERFACE.md section 3).

    An explicit name must work or it is an error (exit 2) that lists what is
    available. Without --backend, MDIVICOM_BACKEND is the default and just as
    strict (an operator who set podman because Docker is not allowed must never
    silently get Docker), except for plugin kinds it cannot run: python plugins
    still run on python. `auto` tries MDIVICOM_BACKEND, the user config file's
    `backend`, then python for python plugins or docker, podman for container
    plugins, and takes the first that runs this kind and answers.
    """
    name = requested
    if name is None:
        env_choice = os.environ.get(BACKEND_ENV)
        if env_choice and env_choice != "auto":
            chosen = backends.get(env_choice)
            if chosen is None or kind in chosen.kinds:
                return _explicit(env_choice, kind, backends, source=BACKEND_ENV)
        name = "auto"
    if name == "auto":
        tried: list[str] = []
        for candidate in _preferences(kind):
            backend = backends.get(candidate)
            if backend is None or kind not in backend.kinds or candidate in tried:
                continue
            tried.append(candidate)
            if backend.availability().available:
                return backend
        others = [n for n, b in backends.items() if kind in b.kinds and n not in tried]
        for candidate in others:  # third-party backends last
            if backends[candidate].availability().available:
                return backends[candidate]
        raise BackendUnavailable(_none_available(kind, backends))
    return _explicit(name, kind, backends, source="--backend")


def _explicit(
    name: str, kind: str, backends: dict[str, ExecutionBackend], source: str
) -> ExecutionBackend:
    backend = backends.get(name)
    where = "" if source == "--backend" else f" (from {source})"
    if backend is None:
        hint = (
            f"; install it with: pip install 'mdivicomtools[{name}]'"
            if name in CONTAINER_PREFERENCE
            else ""
        )
        raise BackendUnavailable(
            f"backend {name!r}{where} is not installed; installed backends: "
            f"{', '.join(sorted(backends)) or 'none'}{hint}"
        )
    if kind not in backend.kinds:
        raise BackendUnavailable(
            f"backend {name!r} cannot run {kind} plugins; "
            f"it runs: {', '.join(sorted(backend.kinds))}"
        )
    status = backend.availability()
    if not status.available:
        raise BackendUnavailable(
            f"backend {name!r}{where} is not available: {status.reason}"
            + (f"; {status.fix}" if status.fix else "")
            + f"; available backends: {_available_names(backends)}"
        )
    return backend


def _available_names(backends: dict[str, ExecutionBackend]) -> str:
    names = [n for n, b in sorted(backends.items()) if b.availability().available]
    return ", ".join(names) or "none"


def _none_available(kind: str, backends: dict[str, ExecutionBackend]) -> str:
    able = [n for n, b in sorted(backends.items()) if kind in b.kinds]
    if not able:
        return (
            f"no installed backend runs {kind} plugins; install one with: "
            "pip install 'mdivicomtools[docker]' (or [podman])"
        )
    reasons = "; ".join(f"{n}: {backends[n].availability().reason}" for n in able)
    return (
        f"no backend that runs {kind} plugins is available ({reasons}); "
        "see `mdivicom backends list` for how to fix each"
    )
