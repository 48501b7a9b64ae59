"""Typed errors of mdivicomtools.

Library code raises these; only the CLI turns them into one-line messages and
exit codes, so the Python API keeps full information and the CLI stays uniform.
Each class carries the exit code docs/reference/exit-codes.md assigns to its kind of failure.

The command and the Python API share every check, so a message is written once,
naming an option as the command's flag; a Python caller, who has no flags, read
`pass --overwrite` and `--set 'x': expected KEY=VALUE`. The command says where
it is (`command_line_words()` around each command, the one edge that knows);
everywhere else an error's message shows each flag as the keyword argument a
Python caller passes (`overwrite=True`, `sets`). A command line quoted for the
shell (`` `mdivicom verify OUT/<session>` ``) is one to type, so it keeps its
flags, and a value quoted as given (`'--overwrite'` in `sets`) is the caller's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: each flag of `mdivicom run`, `mdivicom rerun` and `--sessions` as the keyword of
#: `run_plugin`/`RunOptions`, `run_batch`/`BatchOptions` or `rerun` that means it
PYTHON_WORDS: dict[str, str] = {
    "--dataset": "dataset",
    "--out": "out",
    "--config": "config",
    "--set": "sets",
    "--work": "work",
    "--backend": "backend",
    "--dry-run": "dry_run=True",
    "--timeout": "timeout",
    "--overwrite": "overwrite=True",
    "--isolate": "isolate=True",
    "--strict-bundles": "strict_bundles=True",
    "--strict-hooks": "strict_hooks=True",
    "--hash-dataset": "hash_dataset=True",
    "--memory": "memory",
    "--cpus": "cpus",
    "--shm-size": "shm_size",
    "--gpus": "gpus",
    "--mount": "mounts",
    "--stop-grace": "stop_grace",
    "--sessions": "sessions",
    "--jobs": "jobs",
    "--executor": "executor",
    "--scheduler": "scheduler",
    "--resume": "resume=True",
    "--retries": "retries",
    "--slurm-partition": "slurm_partition",
    "--slurm-time": "slurm_time",
    "--slurm-mem": "slurm_mem",
    "--slurm-cpus": "slurm_cpus",
    "--slurm-account": "slurm_account",
    "--slurm-directive": "slurm_directives",
    "--allow-version-change": "allow_version_change=True",
}

# a flag standing on its own: not part of a path ('/data/--out') or of a longer flag
# (patterns as strings, compiled by `re` when first needed: every command imports
# this module, and few raise an error for a Python caller)
_FLAG = r"(?<![\w/.-])--[a-z][a-z-]*[a-z](?![\w-])"
# what keeps its flags: a whole command quoted for the shell, and a value quoted as
# the caller gave it (`sets=["--overwrite"]` was shown as `sets 'overwrite=True'`,
# `backend="--isolate"` as `backend 'isolate=True' is not installed`); a quote
# opens only where no letter precedes it, so the apostrophe of `plugin's` does not
_QUOTED = (
    r"(`mdivicom [^`]*`"
    r"|(?<![\w'])'[^'\n]*'(?![\w'])"
    r'|(?<![\w"])"[^"\n]*"(?![\w"]))'
)

_on_command_line = False


@contextmanager
def command_line_words() -> Iterator[None]:
    """Show options as the command's flags while the command runs.

    Process-wide rather than per thread or context: the command's own threads
    and forked workers say what it says. Restored afterwards, so a command
    called in-process (a test, a notebook's `main([...])`) leaves the Python API
    in its own words.
    """
    global _on_command_line
    before = _on_command_line
    _on_command_line = True
    try:
        yield
    finally:
        _on_command_line = before


def on_command_line() -> bool:
    """Whether the command is running here (for work handed to another process)."""
    return _on_command_line


def in_callers_words(text: str) -> str:
    """`text` with each flag of the command as its caller names the option."""
    if _on_command_line or "--" not in text:
        return text
    parts = re.split(_QUOTED, text)  # odd parts are quoted command lines and values
    return "".join(
        part if index % 2 else re.sub(_FLAG, lambda m: PYTHON_WORDS.get(m[0], m[0]), part)
        for index, part in enumerate(parts)
    )


class MdivicomError(Exception):
    """Base of every error mdivicomtools raises on purpose.

    Its message names options as the command's flags; shown (`str()`) outside
    the command, they read as the Python API's keywords (`in_callers_words`).
    """

    exit_code: int = 1

    def __str__(self) -> str:
        return in_callers_words(super().__str__())


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
