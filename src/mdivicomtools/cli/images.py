"""`mdivicom images list|pull|save|load`: the container plugins' images, per engine.

Exit status: 0 done; 1 the engine refused (a pull without a registry, a tar
it cannot read); 2 bad input (no such image on the engine, no such file, an
unavailable --backend), nothing changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import PATH

if TYPE_CHECKING:
    from mdivicomtools.runner.images import ImageRow

BACKEND_HELP = "docker, podman or another container backend [default: as for `run`]."


@click.group("images")
def images_group() -> None:
    """Images of the installed container plugins: list, pull, save, load (offline sites)."""


@images_group.command("list")
@click.option(
    "--backend", metavar="NAME", help="Only this engine [default: every container engine]."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(backend: str | None, as_json: bool) -> None:
    """Each container plugin's image on each engine: present or missing, id, digest, size."""
    from mdivicomtools.runner.images import list_images

    rows = list_images(backend)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No container plugins (or no container engine backends) installed.", err=True)
        return
    from mdivicomtools.cli.textui import table
    from mdivicomtools.common.units import format_size

    def state(row: ImageRow) -> str:
        return "present" if row.present else ("?" if row.problem else "missing")

    lines = [
        [
            row.image,
            row.engine,
            state(row),
            (row.id or "").removeprefix("sha256:")[:12],
            row.repo_digests[0].split("@", 1)[1][:19] if row.repo_digests else "",
            format_size(row.size) if row.size else "",
            ",".join(row.plugins) if not row.problem else f"{row.problem}",
        ]
        for row in rows
    ]
    click.echo(
        table(["IMAGE", "ENGINE", "STATE", "ID", "DIGEST", "SIZE", "PLUGINS / PROBLEM"], lines)
    )


@images_group.command("pull")
@click.argument("refs", nargs=-1, metavar="[IMAGE...]")
@click.option("--backend", metavar="NAME", help=BACKEND_HELP)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on an image whose pull takes longer than this (exit 1).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"engine": NAME, "images": [...]} instead of a line per image.',
)
def pull_command(
    refs: tuple[str, ...], backend: str | None, timeout: float | None, as_json: bool
) -> None:
    """Pull the named images, or every container plugin's image."""
    from mdivicomtools.runner.images import pull_images

    engine, pulled = pull_images(list(refs), backend, timeout, warn=_warn)
    if as_json:
        echo_json({"engine": engine, "images": pulled})
        return
    for ref in pulled:
        click.echo(f"pulled {ref} into {engine}")


@images_group.command("save")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE...")
@click.option(
    "-o", "--output", required=True, type=PATH, metavar="FILE.tar", help="The tar file to write."
)
@click.option("--backend", metavar="NAME", help=BACKEND_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"engine": NAME, "images": [...], "file": FILE.tar} instead of a line.',
)
def save_command(refs: tuple[str, ...], output: str, backend: str | None, as_json: bool) -> None:
    """Write images into one tar file, to carry onto a machine without a registry."""
    from pathlib import Path  # pathlib costs ~8 ms of every command's start-up at top level

    from mdivicomtools.runner.images import save_images

    engine = save_images(list(refs), Path(output), backend, warn=_warn)
    if as_json:
        echo_json({"engine": engine, "images": list(refs), "file": output})
        return
    click.echo(f"saved {', '.join(refs)} from {engine} to {output}")


@images_group.command("load")
@click.argument("path", type=PATH, metavar="FILE.tar")
@click.option("--backend", metavar="NAME", help=BACKEND_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"engine": NAME, "images": [...]} instead of a line per image.',
)
def load_command(path: str, backend: str | None, as_json: bool) -> None:
    """Load images from a tar file written by `images save` (or docker/podman save)."""
    from pathlib import Path

    from mdivicomtools.runner.images import load_images

    engine, names = load_images(Path(path), backend, warn=_warn)
    if as_json:
        echo_json({"engine": engine, "images": names})
        return
    for name in names:
        click.echo(f"loaded {name} into {engine}")


def _warn(note: str) -> None:
    click.echo(f"warning: {note}", err=True)
