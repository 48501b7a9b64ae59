"""Helpers every command uses to print: JSON documents and warnings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click


def echo_json(value: Any) -> None:
    """One JSON document on stdout, nothing else (the contract of every --json).

    msgspec encodes several times faster than json.dumps with indent, which is
    pure Python; with hundreds of plugins that shows in `plugins list --json`.
    """
    from mdivicomtools.common.jsonio import pretty  # msgspec: not needed for --help

    click.echo(pretty(value).decode("utf-8"), nl=False)


def warn(messages: Iterable[str]) -> None:
    for message in messages:
        click.echo(f"Warning: {message}", err=True)


class _FastExit:
    requested = False


def request_fast_exit() -> None:
    """Say that everything this command does is done and recorded: `main` may then end
    the process without the interpreter's teardown (freeing every module's objects,
    20-40 ms after a container run), when it runs as the `mdivicom` program."""
    _FastExit.requested = True


def fast_exit_requested() -> bool:
    return _FastExit.requested
