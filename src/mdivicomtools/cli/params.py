"""Click parameter types shared by the commands."""

from __future__ import annotations

import click


class PathText(click.ParamType):
    """A file or folder path, kept as the text given, that must not be empty.

    `Path("")` is the current directory, so `--out "$OUT"` with OUT unset would
    otherwise write into, or read from, wherever the shell happens to be, without
    a word. Every path parameter of the CLI uses this type, so an empty one is a
    usage error (exit 2) naming the parameter before anything runs. Existence is
    left to the commands: some paths are created, and they say better what is
    missing.
    """

    name = "path"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text:
            self.fail("the value is empty (an unset shell variable?)", param, ctx)
        return text


#: the one instance every path option and argument uses
PATH = PathText()
