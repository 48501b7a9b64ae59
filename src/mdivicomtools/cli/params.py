"""Click parameter types shared by the commands."""

from __future__ import annotations

import errno
import os

import click


class PathText(click.ParamType):
    """A file or folder path, kept as the text given, that must not be empty.

    `Path("")` is the current directory, so `--out "$OUT"` with OUT unset would
    otherwise write into, or read from, wherever the shell happens to be, without
    a word. Every path parameter of the CLI uses this type, so an empty one is a
    usage error (exit 2) naming the parameter before anything runs. Existence is
    left to the commands: some paths are created, and they say better what is
    missing.

    A relative path needs the working folder, which a cron job or a script
    running in a folder that was removed meanwhile (`rm -r` of a CI job's
    checkout) no longer has: it is refused here, naming the cause, where
    `os.getcwd()` failed later as `internal error (FileNotFoundError ...)` or
    said `'results' is not a folder` of a folder that exists. So is a path
    longer than the system allows (`common.pathlimits`), and one through a
    loop of symbolic links: every command failed on those its own way.
    """

    name = "path"

    def __init__(self, json_text: bool = False) -> None:
        #: `--config` takes a JSON object too, which is no path to check
        self.json_text = json_text

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text:
            self.fail("the value is empty (an unset shell variable?)", param, ctx)
        if self.json_text and text.lstrip().startswith("{"):
            return text
        from mdivicomtools.common.home import expand_home  # not at start-up: --help needs none
        from mdivicomtools.common.pathlimits import path_too_long, shortened

        expanded = expand_home(text)
        if not expanded.is_absolute() and not has_working_folder():
            self.fail(
                f"{text!r} is relative, but the folder this command was started in has "
                "been removed; cd into an existing folder, or give an absolute path",
                param,
                ctx,
            )
        absolute = os.path.abspath(expanded)
        why = path_too_long(absolute) or _symlink_loop(absolute)
        if why is not None:
            self.fail(f"{shortened(text)!r} cannot be used: {why}", param, ctx)
        return text


def _symlink_loop(path: str) -> str | None:
    """Why `path` cannot be resolved when it goes through a loop of symbolic links
    (`a -> b -> a`): the run's validation failed on it as `validation hook
    'mdivicomtools.validation' raised RuntimeError: Symlink loop`."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"it goes through a loop of symbolic links ({exc.strerror}); fix the links"
    return None


def has_working_folder() -> bool:
    """False when the folder this process works in has been removed."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


#: the one instance every path option and argument uses
PATH = PathText()
#: `--config`: a JSON object (`{...}`, as runner.config reads it) or a path
JSON_OR_PATH = PathText(json_text=True)


class Number(click.ParamType):
    """A number option whose error says what the number counts and how to write it.

    click's own `float` and `int` said `'5m' is not a valid float.` to a user who
    wrote `--timeout 5m`: the type of a programming language, and no word that
    the option takes plain seconds. Range and finiteness stay with the options'
    own checks, which say them for the Python API too.
    """

    def __init__(self, whole: bool, what: str, example: str) -> None:
        self.whole = whole
        self.what = what
        self.example = example
        self.name = "integer" if whole else "float"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text) if self.whole else float(text)
        except ValueError:
            self.fail(f"{str(value)!r} is not {self.what}; write {self.example}", param, ctx)


#: `--timeout`, `--stop-grace`: plain seconds, as the help says
SECONDS = Number(False, "a number of seconds", "seconds only, such as 300 for five minutes")
#: `--cpus`: a CPU count that may be a fraction
CPUS = Number(False, "a number of CPUs", "a number such as 2 or 0.5")
#: `--jobs`, `--retries`, `--slurm-cpus`
WHOLE = Number(True, "a whole number", "digits only, such as 4")
