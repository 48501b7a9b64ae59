"""Path parameters of every command: an empty one (an unset shell variable) is a usage error.

`Path("")` is the current folder, so `--out "$OUT"` with OUT unset used to write
into wherever the shell was.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from clitree import command_at, subcommands
from mdivicomtools.cli import cli
from mdivicomtools.cli.params import PathText

#: metavars that name a file or folder
PATHLIKE = ("DIR", "PATH", "FILE")


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(subcommands(group).items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*path, name)))
        else:
            found.append((*path, name))
    return found


def _command(path: tuple[str, ...]) -> click.Command:
    return command_at(path)


def _is_path(param: click.Parameter) -> bool:
    metavar = param.metavar or ""
    if "=" in metavar:  # NAME=PATH (--mount) is checked when the run reads it
        return False
    named = param.name in ("out", "new_out", "dataset", "work", "config_option", "folder")
    return named or any(word in metavar for word in PATHLIKE)


def _path_params(path: tuple[str, ...]) -> list[click.Parameter]:
    return [param for param in _command(path).params if _is_path(param)]


PATH_PARAMS = [(path, param.name) for path in _commands(cli) for param in _path_params(path)]


def test_the_commands_have_path_parameters():
    names = {(" ".join(path), name) for path, name in PATH_PARAMS}
    assert {("run", "dataset"), ("run", "out"), ("run", "work"), ("rerun", "out")} <= names
    assert ("rerun", "new_out") in names and ("runs list", "out") in names


@pytest.mark.parametrize(
    ("path", "name"), PATH_PARAMS, ids=[f"{' '.join(p)}:{n}" for p, n in PATH_PARAMS]
)
def test_every_path_parameter_refuses_an_empty_value(path, name):
    (param,) = [p for p in _command(path).params if p.name == name]
    assert isinstance(param.type, PathText), f"mdivicom {' '.join(path)}: {name} is not PATH"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["run", "hello", "--dataset", "", "--out", "o"], "'--dataset'"),
        (["run", "hello", "--dataset", "d", "--out", ""], "'--out'"),
        (["run", "hello", "--dataset", "d", "--out", "o", "--work", ""], "'--work'"),
        (["run", "hello", "--dataset", "d", "--out", "o", "--config", ""], "'--config'"),
        (["rerun", "", "latest"], "'OUT'"),
        (["rerun", "o", "latest", "--out", ""], "'--out'"),
        (["rerun", "o", "latest", "--dataset", ""], "'--dataset'"),
        (["runs", "list", ""], "'OUT'"),
    ],
)
def test_an_empty_path_is_a_usage_error_naming_the_option(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)  # were anything to run, it would not be here
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for {option}: the value is empty (an unset shell variable?)"
    )
