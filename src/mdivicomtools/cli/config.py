"""`mdivicom config show`: the effective settings and where each came from."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json


def _shown(value: object) -> str:
    if value is None or value == "":
        return "-"
    return str(value).lower() if isinstance(value, bool) else str(value)


@click.group("config")
def config_group() -> None:
    """Inspect the settings runs use (user config file, environment, defaults)."""


@config_group.command("show")
@click.option("--backend", metavar="NAME", help="Show the effect of `run --backend NAME`.")
@click.option(
    "--strict-bundles",
    is_flag=True,
    default=None,
    help="Show the effect of `run --strict-bundles`.",
)
@click.option(
    "--hash-dataset",
    is_flag=True,
    default=None,
    help="Show the effect of `run --hash-dataset`.",
)
@click.option(
    "--strict-hooks",
    is_flag=True,
    default=None,
    help="Show the effect of `run --strict-hooks`.",
)
@click.option("--scheduler", metavar="ADDRESS", help="Show the effect of `run --scheduler`.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def show_command(
    backend: str | None,
    strict_bundles: bool | None,
    hash_dataset: bool | None,
    strict_hooks: bool | None,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Print every setting with its value and origin, like `git config --show-origin`.

    The origin is one of: default, user config file (its path), environment
    (the variable), command line (the option). Options given here show what a
    `run` with the same options would use.
    """
    from mdivicomtools.settings import effective_settings

    settings = effective_settings(
        {
            "backend": backend,
            "strict_bundles": strict_bundles,
            "hash_dataset": hash_dataset,
            "strict_hooks": strict_hooks,
            "dask_scheduler": scheduler,
        }
    )
    if as_json:
        echo_json(settings)
        return
    from mdivicomtools.cli.textui import table

    rows = [
        [s.name, _shown(s.value), s.origin + (f" ({s.source})" if s.source else "")]
        for s in settings
    ]
    click.echo(table(["SETTING", "VALUE", "ORIGIN"], rows))
