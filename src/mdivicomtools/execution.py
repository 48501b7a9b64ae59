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


def choose_backend(requested: str | None, kind: str, hooks: HookManager) -> ExecutionBackend:
    """Resolve `--backend` (default: MDIVICOM_BACKEND, then auto) for a plugin kind."""
    backends = collect_backends(hooks)
    name = requested or os.environ.get(BACKEND_ENV) or "auto"
    if name == "auto":
        candidates = [n for n, b in backends.items() if kind in b.kinds]
        if kind == "python":
            candidates = ["python"] if "python" in backends else candidates
        else:
            preferred = [n for n in CONTAINER_PREFERENCE if n in candidates]
            candidates = preferred + [n for n in candidates if n not in preferred]
        for candidate in candidates:
            if backends[candidate].availability().available:
                return backends[candidate]
        raise BackendUnavailable(_none_available(kind, backends))
    backend = backends.get(name)
    if backend is None:
        raise BackendUnavailable(
            f"backend {name!r} is not installed; installed backends: "
            f"{', '.join(sorted(backends)) or 'none'}"
            + (
                f"; install it with: pip install 'mdivicomtools[{name}]'"
                if name in CONTAINER_PREFERENCE
                else ""
            )
        )
    if kind not in backend.kinds:
        raise BackendUnavailable(
            f"backend {name!r} cannot run {kind} plugins; "
            f"it runs: {', '.join(sorted(backend.kinds))}"
        )
    status = backend.availability()
    if not status.available:
        raise BackendUnavailable(
            f"backend {name!r} is not available: {status.reason}"
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
    return f"no backend that runs {kind} plugins is available ({reasons})"
