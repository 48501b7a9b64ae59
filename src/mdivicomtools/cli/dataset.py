"""`mdivicom dataset check`: check a folder against the openSIDS layout."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import PATH

#: findings shown per file: a table written wrong in every row would print a line per
#: row; --json lists them all
PER_FILE = 10


@click.group("dataset")
def dataset_group() -> None:
    """Inspect openSIDS datasets."""


@dataset_group.command("check")
@click.argument("folder", type=PATH, metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def check_command(folder: str, as_json: bool) -> None:
    """Check DIR against the openSIDS v0.1 layout: errors and warnings with paths.

    Exit status: 0 no errors (warnings allowed), 1 errors, 2 DIR is not a folder.
    """
    import msgspec

    from mdivicomtools.bundles.opensids import check_dataset

    report = check_dataset(folder)
    if as_json:
        data = msgspec.to_builtins(report)
        data.update(errors=report.errors, warnings=report.warnings)
        echo_json(data)
    else:
        for line in report.lines(PER_FILE):
            click.echo(line)
        click.echo(
            f"{report.root}: {report.sessions} session(s), {report.streams} stream(s), "
            f"{report.errors} error(s), {report.warnings} warning(s)"
        )
    if report.errors:
        raise click.exceptions.Exit(1)
