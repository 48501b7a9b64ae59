"""`mdivicom config show`: the effective settings and where each came from."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import CPUS, SECONDS, WHOLE


def _shown(value: object) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):  # [slurm] directives, [container] gpus ids
        return ", ".join(map(str, value))
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
@click.option("--memory", metavar="SIZE", help="Show the effect of `run --memory`.")
@click.option("--cpus", type=CPUS, metavar="N", help="Show the effect of `run --cpus`.")
@click.option("--shm-size", metavar="SIZE", help="Show the effect of `run --shm-size`.")
@click.option("--gpus", metavar="all|N|IDS|none", help="Show the effect of `run --gpus`.")
@click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="NAME=PATH",
    help="Show the effect of `run --mount` (repeatable).",
)
@click.option(
    "--stop-grace", type=SECONDS, metavar="SECONDS", help="Show the effect of `run --stop-grace`."
)
@click.option(
    "--slurm-partition", metavar="NAME", help="Show the effect of `run --slurm-partition`."
)
@click.option("--slurm-time", metavar="D-HH:MM:SS", help="Show the effect of `run --slurm-time`.")
@click.option("--slurm-mem", metavar="SIZE", help="Show the effect of `run --slurm-mem`.")
@click.option(
    "--slurm-cpus", type=WHOLE, metavar="N", help="Show the effect of `run --slurm-cpus`."
)
@click.option("--slurm-account", metavar="NAME", help="Show the effect of `run --slurm-account`.")
@click.option(
    "--slurm-directive",
    "slurm_directives",
    multiple=True,
    metavar="LINE",
    help="Show the effect of `run --slurm-directive` (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def show_command(
    backend: str | None,
    strict_bundles: bool | None,
    hash_dataset: bool | None,
    strict_hooks: bool | None,
    scheduler: str | None,
    memory: str | None,
    cpus: float | None,
    shm_size: str | None,
    gpus: str | None,
    mounts: tuple[str, ...],
    stop_grace: float | None,
    slurm_partition: str | None,
    slurm_time: str | None,
    slurm_mem: str | None,
    slurm_cpus: int | None,
    slurm_account: str | None,
    slurm_directives: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print every setting with its value and origin, like `git config --show-origin`.

    The origin is one of: default, user config file (its path), environment
    (the variable), command line (the option). Options given here show what a
    `run` with the same options would use. A `container.*` setting shown as `-`
    is left to the plugin's manifest.
    """
    from mdivicomtools.settings import effective_settings

    settings = effective_settings(
        {
            "backend": backend,
            "strict_bundles": strict_bundles,
            "hash_dataset": hash_dataset,
            "strict_hooks": strict_hooks,
            "dask_scheduler": scheduler,
            "container.memory": memory,
            "container.cpus": cpus,
            "container.shm_size": shm_size,
            "container.gpus": gpus,
            "container.mounts": mounts or None,
            "container.stop_grace_s": stop_grace,
            "slurm.partition": slurm_partition,
            "slurm.time": slurm_time,
            "slurm.mem": slurm_mem,
            "slurm.cpus": slurm_cpus,
            "slurm.account": slurm_account,
            "slurm.directives": list(slurm_directives) or None,
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
