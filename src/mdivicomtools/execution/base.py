"""The ExecutionBackend protocol: what the runner needs from whatever runs a plugin.

Backends arrive through the `mdivicom_execution_backends` hook, so the built-in
python backend, the docker and podman distributions and a site's own backend
are found and treated the same way (see `registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

from mdivicomtools.common.text import a_type
from mdivicomtools.errors import UsageError
from mdivicomtools.model.run import ContainerInfo, ErrorInfo, RunOutcome, RunRequest

if TYPE_CHECKING:
    from mdivicomtools.execution.runlog import RunLog


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

#: what `execute` may leave in `outcome.status`; `interrupted` is the runner's to set
#: (execute re-raises KeyboardInterrupt), `dry_run` is what the runner makes of a dry
#: run that succeeded
EXECUTE_STATUSES = ("succeeded", "failed", "timed_out")


def missing_members(candidate: object) -> list[str]:
    """What `candidate` lacks of the required part of ExecutionBackend."""
    return [member for member in REQUIRED_MEMBERS if not hasattr(candidate, member)]


def shape_problem(candidate: object) -> str | None:
    """Why `candidate` cannot be taken as a backend, or None.

    Checked where a hook module hands its backends over, so that a name that is not
    a string (which broke every listing) or `kinds = "container"` (a string, whose
    letters were taken as kinds) is one line naming the module, not a crash or a
    backend that runs by accident.
    """
    missing = missing_members(candidate)
    if missing:
        what = _a(type(candidate).__name__)
        return f"{what}, not an ExecutionBackend (it has no {', '.join(missing)})"
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        return (
            f"a backend whose name is {name!r}; `name` must be a non-empty string "
            "without surrounding spaces (what --backend takes)"
        )
    kinds = getattr(candidate, "kinds", None)
    if (
        isinstance(kinds, (str, bytes))
        or not isinstance(kinds, (set, frozenset, list, tuple))
        or not kinds
        or not all(isinstance(kind, str) for kind in kinds)
    ):
        return (
            f"backend {name!r} with kinds {kinds!r}; `kinds` must be a non-empty set of "
            'plugin kinds, e.g. frozenset({"container"})'
        )
    for method in ("availability", "execute", "preflight", "close"):
        if hasattr(candidate, method) and not callable(getattr(candidate, method)):
            return f"backend {name!r} whose {method} is not a method"
    return None


def outcome_problems(outcome: RunOutcome) -> list[str]:
    """What `execute` left in `outcome` that breaks the contract; one line each.

    The record is written from the outcome: a string in `error` or an unknown
    status made the runner crash with the record stuck at `running`, and a str
    exit code made a record other tools could not read.
    """
    problems = []
    if outcome.status not in EXECUTE_STATUSES:
        problems.append(
            f"set outcome.status to {outcome.status!r}; execute sets one of "
            + ", ".join(EXECUTE_STATUSES)
            + (
                " (on KeyboardInterrupt it cleans up and re-raises)"
                if outcome.status == "interrupted"
                else ""
            )
        )
    if outcome.error is not None and not isinstance(outcome.error, ErrorInfo):
        problems.append(
            f"set outcome.error to {a_type(outcome.error)}; use "
            "outcome.fail(type, message) (or an ErrorInfo from mdivicomtools.model.run)"
        )
    code = outcome.exit_code
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        problems.append(f"set outcome.exit_code to {a_type(code)}; it is an int or None")
    if outcome.container is not None and not isinstance(outcome.container, ContainerInfo):
        problems.append(
            f"set outcome.container to {a_type(outcome.container)}; it is a "
            "ContainerInfo from mdivicomtools.model.run (or None)"
        )
    if outcome.engine is not None and not isinstance(outcome.engine, str):
        problems.append(f"set outcome.engine to {a_type(outcome.engine)}; it is a str")
    return problems


class BackendUnavailable(UsageError):
    """The chosen backend is not installed, not reachable or cannot run this kind."""


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
