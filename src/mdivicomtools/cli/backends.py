"""`mdivicom backends list`: which execution backends exist and whether they answer."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json


@click.group("backends")
def backends_group() -> None:
    """Inspect execution backends (python built in; docker, podman as add-ons)."""


@backends_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(as_json: bool) -> None:
    """List every backend: kinds it runs, available or not, engine version, how to fix.

    Checking availability connects to each engine (and may start a private
    Podman service for a moment).
    """
    from mdivicomtools.execution import close_backends, collect_backends
    from mdivicomtools.hooks import load_hooks

    backends = collect_backends(load_hooks())
    try:
        items = []
        for name, backend in sorted(backends.items()):
            status = backend.availability()
            items.append(
                {
                    "name": name,
                    "kinds": sorted(backend.kinds),
                    "available": status.available,
                    "engine": status.engine,
                    "version": status.version,
                    "reason": status.reason,
                    "fix": status.fix,
                }
            )
    finally:
        close_backends(backends)
    if as_json:
        echo_json(items)
        return
    from mdivicomtools.textui import table

    rows = [
        [
            item["name"],
            ",".join(item["kinds"]),
            "yes" if item["available"] else "no",
            item["engine"] or f"{item['reason']} (fix: {item['fix']})",
        ]
        for item in items
    ]
    click.echo(table(["NAME", "RUNS", "AVAILABLE", "ENGINE / PROBLEM"], rows))
