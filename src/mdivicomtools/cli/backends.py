"""`mdivicom backends list`: which execution backends exist and whether they answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, warn

if TYPE_CHECKING:
    from mdivicomtools.execution.registry import BackendItem


def _engine_text(item: BackendItem) -> str:
    if item.gpus is None:
        return item.engine or ""
    gpus = "yes" if item.gpus.available else "no"
    return f"{item.engine}; GPUs: {gpus} ({item.gpus.detail})"


@click.group("backends")
def backends_group() -> None:
    """Inspect execution backends (python built in; docker, podman as add-ons)."""


@backends_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(as_json: bool) -> None:
    """List every backend: kinds it runs, available or not, engine version, GPU support,
    how to fix.

    Checking availability connects to each engine (and may start a private
    Podman service for a moment).
    """
    from mdivicomtools.hooks.manager import load_hooks

    hooks = load_hooks()
    with hooks.get_backends() as registry:
        items = registry.items()
        failures = list(registry.errors)
    # diagnostics go to stderr in both forms, so `--json` keeps one document on stdout
    warn(hooks.warnings)
    warn(
        f"hook module {module.name!r} is broken and left out, so no backend of its is "
        f"listed: {module.error}"
        for module in hooks.broken
    )
    warn(f"hook module {e.plugin!r} could not provide backends: {e.error}" for e in failures)
    if as_json:
        echo_json(items)
        return
    from mdivicomtools.cli.textui import table

    rows = [
        [
            item.name,
            ",".join(item.kinds),
            "yes" if item.available else "no",
            _engine_text(item)
            if item.available
            else f"{item.reason}" + (f" (fix: {item.fix})" if item.fix else ""),
        ]
        for item in items
    ]
    click.echo(table(["NAME", "RUNS", "AVAILABLE", "ENGINE / PROBLEM"], rows))
