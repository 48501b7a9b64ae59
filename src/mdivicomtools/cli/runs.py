"""`mdivicom runs ...`: the run records under an output folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, warn
from mdivicomtools.cli.params import PATH

if TYPE_CHECKING:
    from pathlib import Path

    from mdivicomtools.records.listfilter import RunFilter


@click.group("runs")
def runs_group() -> None:
    """List, show and export run records (OUT/_runs/*.json)."""


#: the statuses `runs list --status` takes: those a record can hold, as listed
STATUSES = (
    "succeeded", "failed", "interrupted", "timed_out", "dry_run", "running", "abandoned",
)  # fmt: skip


@runs_group.command("list")
@click.argument("out", type=PATH)
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="REF",
    help="Only runs of this plugin (<id> or <publisher>/<id>). Repeatable: any of them.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only runs that ended so (for a batch: whose latest run did). Repeatable.",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only runs started since WHEN: an age (30m, 12h, 7d, 2w), a date (2026-11-01), "
    "a date and time (2026-11-01T14:30; UTC unless an offset is given) or a run id.",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    metavar="N",
    help="Only the N newest of the runs (or batch lines) the other filters keep.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(
    out: str,
    plugins: tuple[str, ...],
    statuses: tuple[str, ...],
    since: str | None,
    last: int | None,
    as_json: bool,
) -> None:
    """List the runs recorded under OUT, oldest first.

    For a batch's --out, one line per session and plugin with its latest run.
    The filters narrow either list; given together, a line must match them all.
    """
    from pathlib import Path  # pathlib costs 5 ms of start-up for every command

    from mdivicomtools.errors import UsageError
    from mdivicomtools.records.listfilter import RunFilter, parse_since
    from mdivicomtools.records.store import (
        RunListItem,
        load_records,
        record_files,
        run_roots,
        shown_status,
    )

    chosen = RunFilter(
        plugins=plugins,
        statuses=statuses,
        since=parse_since(since) if since is not None else None,
        last=last,
    )
    if not Path(out).is_dir():
        raise UsageError(f"{out!r} is not a folder; give the --out folder of earlier runs")
    if any(root.session is not None for root in run_roots(Path(out))):
        _list_sessions(Path(out), as_json, chosen)
        return
    # a `_runs/` another user made private fails as a path this user may not enter
    # (exit 1): listing no runs, exit 0, said there were none
    record_files(Path(out))
    records, problems = load_records(Path(out))
    warn(problems)
    everything = len(records)
    records = chosen.keep(
        records,
        plugin=lambda r: r.plugin.ref,
        status=lambda r: shown_status(r, Path(out)),
        started_at=lambda r: r.started_at,
    )
    if as_json:
        echo_json([RunListItem.of(r, Path(out)) for r in records])
        return
    if not records:
        if everything and chosen.active:
            click.echo(f"No run of the {everything} under {out} matches the filters.", err=True)
        else:
            click.echo(f"No run records under {out}.", err=True)
        return
    from mdivicomtools.cli.textui import table

    rows = [
        [
            r.run_id,
            shown_status(r, Path(out)),
            r.plugin.ref,
            r.plugin.version,
            f"{r.duration_s:.2f}s",
            f"{r.error.type}: {r.error.message}" if r.error else "",
        ]
        for r in records
    ]
    click.echo(table(["RUN_ID", "STATUS", "PLUGIN", "VERSION", "DURATION", "ERROR"], rows))


def _list_sessions(out: Path, as_json: bool, chosen: RunFilter) -> None:
    """A batch's --out: one line per session and plugin, with the latest status; the
    folder's own runs, when it is also a run root, on lines whose session is `-`."""
    from mdivicomtools.records.store import latest_by_session

    every, problems = latest_by_session(out)
    warn(problems)
    rows = chosen.keep(
        every,
        plugin=lambda r: r.plugin,
        status=lambda r: r.status,
        started_at=lambda r: r.started_at,
    )
    if as_json:
        echo_json(rows)
        return
    if not rows and every and chosen.active:
        click.echo(f"No line of the {len(every)} under {out} matches the filters.", err=True)
        return
    from mdivicomtools.cli.textui import table

    click.echo(
        table(
            ["SESSION", "PLUGIN", "LATEST", "RUN_ID", "RUNS", "ERROR"],
            [
                [r.session or "-", r.plugin, r.status, r.run_id, str(r.runs), r.error or ""]
                for r in rows
            ],
        )
    )


@runs_group.command("clean")
@click.argument("out", type=PATH)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print what was done as a JSON array of {text, done} (done false: left).",
)
def clean_command(out: str, as_json: bool) -> None:
    """Remove what dead runs left under OUT: staging folders, `running` records.

    A run whose runner was killed (kill -9, a lost machine) leaves its
    `_staging/<run_id>/` and a record that says `running`; this removes the
    staging and marks the record `abandoned`. One killed while it replaced a
    plugin's output (before its record said `succeeded`) has the previous
    output put back. Runs still in progress are left alone. The next `mdivicom
    run` into OUT does the same. A record or summary write cut short leaves a
    hidden `.<name>.<random>.tmp`; `runs clean` removes it once no live
    process is writing it. Dataset manifests in `_runs/datasets/` that no
    record names any more (a record was deleted) are removed once an hour
    old. What cannot be removed (another user's files,
    say) or rewritten (a record on a full disk) is named with why, and the exit
    is 1.
    """
    from pathlib import Path

    from mdivicomtools.records.store import session_folders
    from mdivicomtools.runner.debris import Cleaned, CleanIncomplete, remove_dead_runs

    root = Path(out)
    if not root.is_dir():
        from mdivicomtools.errors import UsageError

        raise UsageError(f"{out!r} is not a folder; give the --out of earlier runs")
    done: list[Cleaned] = []
    for folder in [root, *session_folders(root)]:
        done.extend(remove_dead_runs(folder, every_record=True))
    left = [item for item in done if not item.done]
    if as_json:
        from mdivicomtools.cli.output import echo_json

        # the report names what is left too: a second {"error": ...} document after
        # it would break the one-document rule of --json
        echo_json([{"text": item.text, "done": item.done} for item in done])
    else:
        for item in done:
            if item.done:
                click.echo(item.text)
    click.echo(f"{len(done) - len(left)} item(s) cleaned under {out}", err=True)
    if left:
        for item in left[: None if as_json else -1]:
            click.echo(f"Error: {item.text}", err=True)
        if as_json:
            raise click.exceptions.Exit(CleanIncomplete.exit_code)
        raise CleanIncomplete(left[-1].text)


@runs_group.command("show")
@click.argument("out", type=PATH)
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def show_command(out: str, run_id: str, as_json: bool) -> None:
    """Show the record of RUN_ID (or `latest`) under OUT."""
    from pathlib import Path

    from mdivicomtools.model.layout import runs_dir
    from mdivicomtools.records.store import (
        find_record,
        record_document,
        shown_status,
        stored_document,
    )

    record = find_record(Path(out), run_id)
    path = runs_dir(Path(out)) / f"{record.run_id}.json"
    data = record_document(path, record)
    if as_json:
        echo_json(data)
        return
    from mdivicomtools.cli.textui import fields
    from mdivicomtools.common.jsonio import pretty

    stored = stored_document(path)
    shown = shown_status(record, Path(out))
    pairs = []
    for key, value in data.items():
        if key == "status" and shown != record.status:
            # as `runs list` shows it: a `running` record whose runner died is not running
            text = (
                f"{shown} (recorded {record.status}; its runner is gone; "
                "`mdivicom runs clean` rewrites it)"
            )
        elif isinstance(stored, dict) and key not in stored:
            # an older release did not write it: its default is not what that run did
            text = "(not in this record)"
        elif isinstance(value, (dict, list)):
            if not value:
                continue
            text = pretty(value).decode().rstrip()
        else:
            text = "-" if value is None else str(value)
        pairs.append((key, text))
    click.echo(fields(pairs))


@runs_group.command("export")
@click.argument("out", type=PATH)
@click.argument("run_id", default="latest")
@click.option(
    "--ro-crate",
    "crate_dir",
    required=True,
    type=PATH,
    metavar="DIR",
    help="Write a Workflow Run RO-Crate (Process Run Crate profile) to DIR (new or empty).",
)
@click.option(
    "--license",
    "license_",
    metavar="URL_OR_TEXT",
    help="The crate's license, e.g. https://creativecommons.org/licenses/by/4.0/ "
    "[default: a note that none was stated].",
)
def export_command(out: str, run_id: str, crate_dir: str, license_: str | None) -> None:
    """Export the provenance of RUN_ID (default `latest`) under OUT as an RO-Crate.

    The crate holds a CreateAction per run (the plugin and, for containers, the
    image digest as instrument; the dataset and the config as object; the
    output files, copied in, with their sha256 as result; start and end times
    and the status). `latest` is the newest succeeded run, as for `verify` and
    `rerun`; a run that did not succeed is exported when named by its id. For a
    batch's --out, every session's latest succeeded run. Needs
    `pip install 'mdivicomtools[rocrate]'`.
    """
    from pathlib import Path

    from mdivicomtools.records.crate import export_crate

    path = export_crate(Path(out), run_id, Path(crate_dir), license=license_)
    click.echo(f"wrote {path}")
