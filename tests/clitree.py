"""Walking the `mdivicom` command tree as click does: the top-level group loads a
command's module only when asked for it, so its `.commands` holds only the
commands used so far."""

from __future__ import annotations

import click

from mdivicomtools.cli import cli


def subcommands(group: click.Group) -> dict[str, click.Command]:
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def command_at(path: tuple[str, ...] | list[str]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = subcommands(command)[name]
    return command
