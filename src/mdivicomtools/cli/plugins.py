"""`mdivicom plugins ...`: list and inspect discovered plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, warn
from mdivicomtools.cli.params import JSON_OR_PATH, PATH, has_working_folder

if TYPE_CHECKING:
    from mdivicomtools.discovery import PluginRecord


@click.group("plugins")
def plugins_group() -> None:
    """List and inspect the installed plugins."""


@plugins_group.command("list")
@click.option(
    "--kind", type=click.Choice(["python", "container"]), help="Only plugins of this kind."
)
@click.option("--publisher", metavar="SLUG", help="Only plugins of this publisher.")
@click.option("--broken", is_flag=True, help="Only broken plugins (with the reason).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_command(kind: str | None, publisher: str | None, broken: bool, as_json: bool) -> None:
    """List every plugin, usable or broken, sorted by publisher then id.

    Listing never imports a plugin's run code.
    """
    from mdivicomtools.discovery import discover

    found = discover()
    warn(found.warnings)
    plugins = [
        record
        for record in found.plugins
        if (kind is None or record.kind == kind)
        and (publisher is None or record.publisher == publisher)
        and (not broken or not record.ok)
    ]
    if as_json:
        echo_json([record.summary() for record in plugins])
        return
    if not plugins and found.plugins:
        click.echo("No plugin matches these filters.", err=True)
        return
    if not plugins:
        click.echo(
            "No plugins found. Install a plugin package, or set MDIVICOM_PLUGIN_PATH "
            "to a folder of manifest files.",
            err=True,
        )
        return
    from mdivicomtools.cli.textui import table

    rows = [
        [
            record.ref,
            record.kind or "?",
            record.version or "?",
            record.status,
            record.description or "" if record.ok else f"{record.error}",
        ]
        for record in plugins
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
    from mdivicomtools.cli.textui import fields

    click.echo(fields(_info_pairs(record)))


@plugins_group.command("check")
@click.argument("ref")
@click.option(
    "--dataset",
    type=PATH,
    metavar="DIR",
    help="Run on this dataset instead of a generated sample openSIDS session.",
)
@click.option(
    "--config",
    "config_option",
    type=JSON_OR_PATH,
    metavar="JSON_OR_PATH",
    help="Config for the test runs (as for `mdivicom run`).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set one config key of the test runs (as for `mdivicom run`). Repeatable; "
    "applied after --config.",
)
@click.option("--backend", metavar="NAME", help="Backend for container plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of checks.")
def check_command(
    ref: str,
    dataset: str | None,
    config_option: str | None,
    sets: tuple[str, ...],
    backend: str | None,
    as_json: bool,
) -> None:
    """Check that the plugin REF keeps the contract: one line per check.

    Registration, callable or image, a dry run and a real run in a temporary
    sandbox (on a sample openSIDS session unless --dataset is given), the dataset
    untouched, nothing written outside out_dir, provenance.json and result
    bundles valid. Exit status 1 if any check fails.
    """
    from mdivicomtools.authoring.check import check_plugin
    from mdivicomtools.runner.config import build_config

    config = build_config(config_option, sets)
    checks = check_plugin(ref, dataset=dataset, config=config, backend=backend)
    if as_json:
        import msgspec

        echo_json(msgspec.to_builtins(checks))
    else:
        for check in checks:
            click.echo(f"{check.status.upper():5} {check.name}: {check.detail}")
    if any(check.status == "fail" for check in checks):
        raise click.exceptions.Exit(1)


#: the image `plugins new --kind container` scaffolds with unless --image names another
DEFAULT_IMAGE = "docker.io/library/busybox:1.36"


@plugins_group.command("new")
@click.argument("name")
@click.option(
    "--kind", type=click.Choice(["python", "container"]), default="python", show_default=True
)
@click.option(
    "--dir", "folder", type=PATH, metavar="DIR", help="Where to write it [default: ./NAME]."
)
@click.option(
    "--publisher",
    default="local",
    show_default=True,
    help="Your lab or user name (a lowercase slug).",
)
@click.option(
    "--image",
    default=DEFAULT_IMAGE,
    show_default=True,
    help="The image of a container plugin.",
)
@click.pass_context
def new_command(
    ctx: click.Context, name: str, kind: str, folder: str | None, publisher: str, image: str
) -> None:
    """Scaffold a plugin NAME that passes `plugins check` and its own tests at once."""
    import shlex

    from mdivicomtools.authoring.scaffold import scaffold

    given = ctx.get_parameter_source("image") is not click.core.ParameterSource.DEFAULT
    if given and kind != "container":
        # a python scaffold has no image: the option was dropped without a word
        raise click.UsageError("--image is for --kind container")
    if folder is None and not has_working_folder():
        # ./NAME: was `cannot write the plugin into 'NAME' (No such file or directory)`
        raise click.UsageError(
            "the folder this command was started in has been removed; cd into an existing "
            "folder, or give --dir an absolute path"
        )
    root = scaffold(name, kind=kind, folder=folder, publisher=publisher, image=image).absolute()
    click.echo(f"created {root}/")
    where = shlex.quote(str(root))
    if kind == "python":
        click.echo(
            f"next: pip install -e {shlex.quote(f'{root}[test]')} && mdivicom plugins check "
            f"{name} && pytest {where}"
        )
    else:
        click.echo(f"next: export MDIVICOM_PLUGIN_PATH={where} && mdivicom plugins check {name}")
        if _image_present(image):
            return  # the note told an author who had just named their own image to get it
        engines = _site_engines()
        pulls = " or ".join(f"`{e} pull {image}`" for e in engines)
        loads = " or ".join(f"`{e} load`" for e in engines)
        listings = " or ".join(f"`{e} images`" for e in engines)
        click.echo(
            f"note: the image {image} must be on your engine first ({pulls}, or {loads}); "
            f"without a registry, scaffold with --image set to an image you have ({listings})"
        )


def _image_present(image: str) -> bool:
    """Whether the engine `run` would use has `image`; False when none answers."""
    from mdivicomtools.errors import MdivicomError
    from mdivicomtools.runner.images import image_on_engine

    try:
        return image_on_engine(image)[1] is not None
    except (MdivicomError, OSError):  # no engine, a site's own backend, no binary
        return False


def _site_engines() -> list[str]:
    """The engine this site runs containers on, when it is set (MDIVICOM_BACKEND, the
    user config); else both, so a Podman site is not told to use docker."""
    import os

    from mdivicomtools.errors import MdivicomError
    from mdivicomtools.settings import BACKEND_ENV, configured_backend

    chosen = os.environ.get(BACKEND_ENV)
    if not chosen:
        try:
            chosen = configured_backend()
        except MdivicomError:  # a broken user config is reported by the commands that need it
            chosen = None
    return [chosen] if chosen in ("docker", "podman") else ["docker", "podman"]
