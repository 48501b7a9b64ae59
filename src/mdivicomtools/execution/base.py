"""The ExecutionBackend protocol: what the runner needs from whatever runs a plugin.

Backends arrive through the `mdivicom_execution_backends` hook, so the built-in
python backend, the docker and podman distributions and a site's own backend
are found and treated the same way (see `registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from mdivicomtools.errors import UsageError

if TYPE_CHECKING:
    from mdivicomtools.execution.runlog import RunLog
    from mdivicomtools.model.run import RunOutcome, RunRequest


class Availability(msgspec.Struct, kw_only=True):
    """Whether a backend can run now; when not, why and how to fix it."""

    available: bool
    engine: str | None = None
    version: str | None = None
    reason: str | None = None
    fix: str | None = None


class ExecutionBackend(Protocol):
    """What the runner needs from a backend.

    `preflight` returns the problems that mean the plugin cannot start (an image
    missing, a pin not matching): they are reported with the validation
    problems, before anything runs. `execute` fills in the outcome: status
    "succeeded" or "failed" (or "timed_out" when request.timeout expired),
    exit_code, error, result and, for containers, `outcome.container`. On
    KeyboardInterrupt it must stop and clean up whatever it started, then let
    the exception propagate; the runner records the run as interrupted. Output
    goes to `log`. `close` releases what the backend holds (a connection, a
    private service); the runner calls it once, after the run.

    `preflight` and `close` may be left out (see `missing_members`): a backend
    without them has no pre-run checks and nothing to release.
    """

    name: str
    kinds: frozenset[str]

    def availability(self) -> Availability: ...

    def preflight(self, request: RunRequest) -> list[str]: ...

    def execute(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None: ...

    def close(self) -> None: ...


REQUIRED_MEMBERS = ("name", "kinds", "availability", "execute")


def missing_members(candidate: object) -> list[str]:
    """What `candidate` lacks of the required part of ExecutionBackend."""
    return [member for member in REQUIRED_MEMBERS if not hasattr(candidate, member)]


class BackendUnavailable(UsageError):
    """The chosen backend is not installed, not reachable or cannot run this kind."""
