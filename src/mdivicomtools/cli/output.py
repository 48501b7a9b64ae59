"""Helpers every command uses to print: JSON documents and warnings."""

from __future__ import annotations

from typing import Any

import click


def echo_json(value: Any) -> None:
    """One JSON document on stdout, nothing else (the contract of every --json).

    msgspec encodes several times faster than json.dumps with indent, which is
    pure Python; with hundreds of plugins that shows in `plugins list --json`.
    """
    import msgspec

    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode("utf-8"))


def warn(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"Warning: {message}", err=True)
