"""What each hook implementation must return and may change, checked after every call.

pluggy passes on whatever an implementation returns and whatever it does to
its arguments. A validation hook returning a string would make each of its
characters a problem; a backends hook returning one backend instead of a list
broke every run; a finalisation hook putting a string into `outcome.outputs`
or a number into `outcome.warnings` left a record nothing could read back.
So the guard around each implementation (hooks.manager) checks the value and
the arguments here, undoes what breaks the contract, and reports it as that
module's HookError: one module's mistake costs that module, never the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.common.text import a_type
from mdivicomtools.model.run import ErrorInfo, OutputFile, RunOutcome, RunRequest

#: the statuses an implementation of each hook may set (any other change is undone):
#: a finalisation hook may fail the run before its output is promoted; a provenance
#: hook runs after, when the status is what happened
SETTABLE_STATUS: dict[str, tuple[str, ...]] = {"mdivicom_finalize_outputs": ("failed",)}


def _list_of_strings(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"returned {_what(value)}, not a list of strings (or None)"
    odd = [item for item in value if not isinstance(item, str)]
    if odd:
        return f"returned a list holding {_what(odd[0])}, not a list of strings (or None)"
    return None


def _dict_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict):
        return None  # JSON-safety is checked where the dict is kept (json_results)
    return f"returned {_what(value)}, not a dict (or None)"


def _sequence_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, (list, tuple)):
        return None  # each item is checked against ExecutionBackend where it is used
    one = "; return it in a list" if hasattr(value, "execute") else ""
    return f"returned {_what(value)}, not a list of backends (or None){one}"


def _backends_as_list(value: Any) -> Any:
    """The backends an implementation gave, as a list, when it gave an iterable of them.

    The hookspec says `Iterable[ExecutionBackend]`: a module that yields its
    backends (`def mdivicom_execution_backends(): yield SiteBackend()`) or returns
    a set of them was refused (`returned a generator, not a list of backends`),
    and its backends were missing. Read here, inside the implementation's guard,
    so a generator that raises half-way is that module's failure. A string, a
    mapping or a single backend object is left as it is, for the check to refuse.
    """
    if (
        value is None
        or isinstance(value, (list, str, bytes, Mapping))
        or not isinstance(value, Iterable)
        or hasattr(value, "execute")
    ):
        return value
    return list(value)


def _anything(value: Any) -> str | None:
    return None  # a finalisation hook's value is not used


#: hook name -> the check of one implementation's value (None: fine)
RESULT_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "mdivicom_validate_run": _list_of_strings,
    "mdivicom_capture_provenance": _dict_or_none,
    "mdivicom_finalize_outputs": _anything,
    "mdivicom_execution_backends": _sequence_or_none,
}


def _each(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    """The check of a wrapper's value: the list of every implementation's value."""

    def check_all(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"returned {_what(value)}, not the list of results it was given"
        return next((problem for problem in map(check, value) if problem is not None), None)

    return check_all


#: hook name -> what an implementation's value is read as before it is checked
SETTLE: dict[str, Callable[[Any], Any]] = {"mdivicom_execution_backends": _backends_as_list}

#: hook name -> the check of a wrapper's value (finalisation's value is not used)
WRAPPER_CHECKS: dict[str, Callable[[Any], str | None]] = {
    name: _each(check)
    for name, check in RESULT_CHECKS.items()
    if name != "mdivicom_finalize_outputs"
}


def _what(value: Any) -> str:
    if value is None:
        return "None"
    return a_type(value)


class Snapshot:
    """What an implementation may not change, taken before it is called."""

    def __init__(self, hook: str, request: RunRequest | None, outcome: RunOutcome | None) -> None:
        self.hook = hook
        self.settable = SETTABLE_STATUS.get(hook, ())
        self.request = request
        self.config = msgspec.json.encode(request.config) if request is not None else None
        self.outcome = outcome
        self.status = outcome.status if outcome is not None else None
        self.error = outcome.error if outcome is not None else None
        self.final = _folder_state(request.out_dir) if request is not None else None

    def restore(self) -> list[str]:
        """Undo what breaks the contract; one line per thing undone."""
        problems: list[str] = []
        if self.request is not None and self.config is not None:
            problems += _restore_config(self.request, self.config)
        if self.request is not None and _folder_state(self.request.out_dir) != self.final:
            # cannot be undone: said, so the file is not thought kept
            after = self.hook == "mdivicom_capture_provenance"  # called once it is promoted
            problems.append(
                f"wrote into request.out_dir ({self.request.out_dir}), the plugin's output "
                "folder, which only the runner writes: "
                + (
                    "the record's list of outputs no longer matches it"
                    if after
                    else "this run's output replaces it, and what is written there is lost"
                )
                + "; a finalisation hook writes into outcome.staging_dir"
            )
        if self.outcome is not None:
            problems += self._restore_outcome(self.outcome)
        return problems

    def _restore_outcome(self, outcome: RunOutcome) -> list[str]:
        problems = []
        bad_outputs = [o for o in outcome.outputs if not isinstance(o, OutputFile)]
        if bad_outputs:
            outcome.outputs = [o for o in outcome.outputs if isinstance(o, OutputFile)]
            problems.append(
                f"put {_what(bad_outputs[0])} into outcome.outputs, which holds "
                "OutputFile entries; dropped (write files into outcome.staging_dir instead: "
                "the runner lists them)"
            )
        bad_warnings = [w for w in outcome.warnings if not isinstance(w, str)]
        if bad_warnings:
            outcome.warnings = [w if isinstance(w, str) else repr(w) for w in outcome.warnings]
            problems.append(
                f"put {_what(bad_warnings[0])} into outcome.warnings, which holds strings; "
                "kept as its repr"
            )
        if outcome.status != self.status and outcome.status not in self.settable:
            may = " or ".join(repr(s) for s in self.settable)
            problems.append(
                f"set outcome.status to {outcome.status!r}; "
                + (
                    f"this hook may set {may} (with outcome.fail); undone"
                    if may
                    else "this hook may not change it; undone"
                )
            )
            outcome.status, outcome.error = self.status or "failed", self.error
        elif (
            outcome.status == "failed"
            and (self.status != "failed" or outcome.error is not self.error)
            and not _usable_error(outcome.error)
        ):
            problems.append(
                "failed the run without a usable outcome.error; use "
                "outcome.fail(error_type, message)"
            )
            outcome.error = ErrorInfo(
                type="FinalizeHookFailed", message="a finalisation hook failed the run"
            )
        return problems


def _folder_state(path: Path) -> tuple[int, int, int] | None:
    """What changes when anything is written directly inside a folder (or it is
    made or removed)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)


def _usable_error(error: object) -> bool:
    return (
        isinstance(error, ErrorInfo)
        and isinstance(error.type, str)
        and isinstance(error.message, str)
    )


def _restore_config(request: RunRequest, before: bytes) -> list[str]:
    """`request` is frozen, but its config is a dict: a change would run the plugin
    with, and record, a config nobody gave. Put back in place (the same dict)."""
    try:
        now = msgspec.json.encode(request.config)
    except (TypeError, msgspec.EncodeError):
        now = b""
    if now == before:
        return []
    request.config.clear()
    request.config.update(msgspec.json.decode(before))
    return ["changed request.config, which hooks may only read; undone"]


def snapshot(hook: str, argnames: tuple[str, ...], args: tuple[Any, ...]) -> Snapshot | None:
    """A Snapshot of the `request` and `outcome` an implementation is given, if any."""
    given = dict(zip(argnames, args, strict=False))
    request = given.get("request")
    outcome = given.get("outcome")
    request = request if isinstance(request, RunRequest) else None
    outcome = outcome if isinstance(outcome, RunOutcome) else None
    if request is None and outcome is None:
        return None
    return Snapshot(hook, request, outcome)
