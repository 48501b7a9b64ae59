"""`mdivicom plugins ...`: list and inspect discovered plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, warn

if TYPE_CHECKING:
    from mdivicomtools.discovery import PluginRecord


@click.group("plugins")
def plugins_group() -> None:
    """List and inspect the installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_command(as_json: bool) -> None:
    """List every plugin, usable or broken, sorted by publisher then id.

    Listing never imports a plugin's run code.
    """
    from mdivicomtools.discovery import discover

    found = discover()
    warn(found.warnings)
    if as_json:
        echo_json([record.summary() for record in found.plugins])
        return
    if not found.plugins:
        click.echo(
            "No plugins found. Install a plugin package, or set MDIVICOM_PLUGIN_PATH "
            "to a folder of manifest files.",
            err=True,
        )
        return
    from mdivicomtools.textui import table

    rows = [
        [
            record.ref,
            record.kind or "?",
            record.version or "?",
            record.status,
            record.description or "" if record.ok else f"{record.error}",
        ]
        for record in found.plugins
    ]
    click.echo(table(["REF", "KIND", "VERSION", "STATUS", "DESCRIPTION / PROBLEM"], rows))


def _info_pairs(record: PluginRecord) -> list[tuple[str, str]]:
    import json

    details = record.details()
    dist = record.distribution
    pairs = [
        ("ref", record.ref),
        ("status", record.status if record.ok else f"broken: {record.error}"),
        ("kind", record.kind or "?"),
        ("version", record.version or "?"),
        ("description", record.description or ""),
        ("source", record.origin),
        ("distribution", f"{dist.name} {dist.version}" if dist else "-"),
    ]
    if "entry" in details:
        pairs.append(("entry", details["entry"]["callable"]))
    if "container" in details:
        pairs.append(("container", json.dumps(details["container"], indent=2)))
    meta = details.get("meta") or {}
    shown = {"api_version", "id", "publisher", "kind", "version", "description"}
    if meta.get("api_version"):
        pairs.append(("api_version", str(meta["api_version"])))
    for key, value in meta.items():
        if key not in shown:
            pairs.append((key, value if isinstance(value, str) else json.dumps(value, indent=2)))
    pairs.extend(("note", note) for note in record.notes)
    return pairs


@plugins_group.command("info")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info_command(ref: str, as_json: bool) -> None:
    """Show everything known about the plugin REF (<id> or <publisher>/<id>).

    A broken plugin is shown with its reason (exit status 0); an unknown or
    ambiguous REF is an error (exit status 2).
    """
    from mdivicomtools.discovery import resolve

    record = resolve(ref, allow_broken=True)
    if as_json:
        echo_json(record.details())
        return
    from mdivicomtools.textui import fields

    click.echo(fields(_info_pairs(record)))
