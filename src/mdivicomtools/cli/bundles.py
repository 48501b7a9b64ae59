"""`mdivicom bundles validate`: check result-bundle sidecars."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import PATH


@click.group("bundles")
def bundles_group() -> None:
    """Validate result bundles (resultbundle.json sidecars)."""


#: how many links leading out of a PATH `bundles validate` names one by one
_LINKS_NAMED = 5


@bundles_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=PATH, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of reports.")
@click.option(
    "--follow-links",
    "-L",
    is_flag=True,
    help="Search folders that symlinks inside a PATH lead to, also outside it.",
)
def validate_command(paths: tuple[str, ...], as_json: bool, follow_links: bool) -> None:
    """Validate sidecar files, or every resultbundle.json under the given folders.

    A symlink to a folder outside a PATH is not followed (it is named on
    stderr) unless --follow-links is given.

    Exit status: 0 all valid, 1 any invalid, 2 a PATH that does not exist or
    holds no sidecar.
    """
    from pathlib import Path

    from mdivicomtools.bundles.resultbundle import find_sidecars, validate_file
    from mdivicomtools.common.text import some
    from mdivicomtools.errors import UsageError

    sidecars: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            unfollowed: list[str] = []
            found = find_sidecars(path, follow_links=follow_links, unfollowed=unfollowed)
            if not found:
                links = f" (symlinks not followed: {some(unfollowed, 5)})" if unfollowed else ""
                raise UsageError(
                    f"no resultbundle.json under {raw!r}{links}; name a folder that holds "
                    "one" + (", or add --follow-links" if unfollowed else "")
                )
            # a tree whose every session links its raw data in has thousands: a few
            # named, the rest counted, so the notes do not bury the reports
            unfollowed.sort()  # met in the order the folders list them
            for link in unfollowed[:_LINKS_NAMED]:
                click.echo(
                    f"note: symlink {link} leads out of {raw!r} and was not followed; "
                    "name its target, or add --follow-links",
                    err=True,
                )
            if len(unfollowed) > _LINKS_NAMED:
                click.echo(
                    f"note: {len(unfollowed) - _LINKS_NAMED} more symlinks lead out of "
                    f"{raw!r} and were not followed; add --follow-links to follow them",
                    err=True,
                )
            sidecars.extend(found)
        elif path.is_file() or path.is_symlink() or path.exists():
            # a FIFO is reported as a problem by validate_file, never read
            sidecars.append(path)
        else:
            raise UsageError(f"{raw!r} does not exist; give a resultbundle.json or a folder")
    reports = [validate_file(sidecar) for sidecar in sidecars]
    if as_json:
        import msgspec

        echo_json(msgspec.to_builtins(reports))
    else:
        for report in reports:
            kind = f"{report.resultbundle_type or '?'} {report.schema_version or '?'}"
            click.echo(f"{'valid  ' if report.valid else 'INVALID'}  {report.path}  ({kind})")
            for message in report.messages():
                click.echo(f"  - {message}")
            for note in report.notes:
                click.echo(f"  note: {note}")
        bad = sum(not r.valid for r in reports)
        click.echo(f"{len(reports)} sidecar(s), {bad} invalid", err=True)
    if any(not report.valid for report in reports):
        raise click.exceptions.Exit(1)
