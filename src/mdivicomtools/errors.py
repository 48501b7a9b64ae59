"""Typed errors of mdivicomtools.

Library code raises these; only the CLI turns them into one-line messages and
exit codes, so the Python API keeps full information and the CLI stays uniform.
Each class carries the exit code docs/reference/exit-codes.md assigns to its kind of failure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


class MdivicomError(Exception):
    """Base of every error mdivicomtools raises on purpose."""

    exit_code: int = 1


class UsageError(MdivicomError):
    """The request itself is wrong; nothing was run (exit 2)."""

    exit_code = 2


class InvalidReference(UsageError):
    """A plugin reference that is not `<id>` or `<publisher>/<id>`."""


class PluginNotFound(UsageError):
    """No installed plugin matches a reference."""

    def __init__(self, ref: str, suggestions: Sequence[str] = ()) -> None:
        self.ref = ref
        self.suggestions = list(suggestions)
        message = f"no plugin named {ref!r} is installed"
        if self.suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        else:
            message += "; run 'mdivicom plugins list' to see the installed plugins"
        super().__init__(message)


class AmbiguousReference(UsageError):
    """A bare id that more than one publisher provides."""

    def __init__(self, ref: str, candidates: Sequence[str]) -> None:
        self.ref = ref
        self.candidates = sorted(candidates)
        super().__init__(
            f"plugin id {ref!r} is provided by several publishers; name one of: "
            + ", ".join(self.candidates)
        )


class PluginBroken(UsageError):
    """The referenced plugin exists but could not be loaded or validated.

    `origin` (`manifest PATH`, `entry point 'NAME = VALUE' of DIST VERSION`) is
    where to fix it: a manifest's JSON error said `line 1 column 2` of no file.
    """

    def __init__(self, ref: str, reason: str, origin: str | None = None) -> None:
        self.ref = ref
        self.reason = reason
        self.origin = origin
        where = f" (from {origin})" if origin else ""
        super().__init__(f"plugin {ref!r} is broken: {reason}{where}")


class EmptyPath(UsageError):
    """A path given as the empty string.

    `Path("")` is the current folder, so `out=os.environ.get("OUT", "")` would
    write into (or verify, or rerun) wherever the process happens to be. The CLI
    refuses an empty path value (cli/params.py); the Python API refuses it here.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name} is an empty path (an unset variable?); "
            "give the folder, or '.' for the current one"
        )


def given_path(value: str | os.PathLike[str], name: str) -> str | os.PathLike[str]:
    """`value`, unless it is the empty string (EmptyPath)."""
    if isinstance(value, str) and not value:
        raise EmptyPath(name)
    return value


def given_run_id(value: object) -> str:
    """`value`, when it is a string (a run id, its start, or `latest`).

    `verify_out(out, 5)` failed with `startswith first arg must be str ...` and
    `rerun(out, 5)` with `'int' object has no attribute 'startswith'`, which did
    not say which argument was wrong.
    """
    if not isinstance(value, str):
        raise TypeError(
            "run_id must be a run id such as '20261125T153322Z_2e49900b', its start, "
            f"or 'latest', got {value!r}"
        )
    return value


class RecordNotWritten(MdivicomError):
    """A run ended but its record could not be written (disk full, permissions)."""

    exit_code = 74
