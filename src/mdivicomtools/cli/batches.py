"""`mdivicom batches ...`: the summaries of past batches under an output folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, warn
from mdivicomtools.cli.params import PATH

if TYPE_CHECKING:
    from mdivicomtools.batch import BatchSummary


@click.group("batches")
def batches_group() -> None:
    """List and show batches, running and past (OUT/_batches/*.json, written by run --sessions)."""


def _load(out: str, *, sessions: bool) -> list[BatchSummary]:
    from pathlib import Path

    from mdivicomtools.batch.summary import as_shown, load_summaries
    from mdivicomtools.errors import UsageError

    if not Path(out).is_dir():
        raise UsageError(f"{out!r} is not a folder; pass the --out of a `run --sessions` batch")
    summaries, problems = load_summaries(Path(out), sessions=sessions)
    warn(problems)
    return [as_shown(summary) for summary in summaries]


def _counts(summary: BatchSummary) -> str:
    return summary.counts() or "none"


@batches_group.command("list")
@click.argument("out", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of the summaries.")
def list_command(out: str, as_json: bool) -> None:
    """List the batches run into OUT, oldest first."""
    summaries = _load(out, sessions=as_json)  # the table shows no session
    if as_json:
        echo_json(summaries)
        return
    if not summaries:
        click.echo(f"No batches under {out} (they are in OUT/_batches/).", err=True)
        return
    from mdivicomtools.cli.textui import table

    rows = [
        [
            s.batch_id,
            s.status,
            s.executor,
            f"{s.plugin} {s.plugin_version}",
            "-" if s.duration_s is None else f"{s.duration_s:.2f}s",
            _counts(s),
        ]
        for s in summaries
    ]
    click.echo(table(["BATCH_ID", "STATUS", "EXECUTOR", "PLUGIN", "DURATION", "SESSIONS"], rows))


@batches_group.command("show")
@click.argument("out", type=PATH)
@click.argument("batch_id", metavar="BATCH_ID|latest")
@click.option("--json", "as_json", is_flag=True, help="Print the batch summary as JSON.")
def show_command(out: str, batch_id: str, as_json: bool) -> None:
    """Show one batch of OUT: its executor, counts and every session's outcome.

    BATCH_ID may be the start of an id that only one batch has.
    """
    from pathlib import Path

    from mdivicomtools.batch.summary import as_shown, find_summary
    from mdivicomtools.errors import UsageError

    if not Path(out).is_dir():
        raise UsageError(f"{out!r} is not a folder; pass the --out of a `run --sessions` batch")
    summary, problems = find_summary(Path(out), batch_id)
    summary = as_shown(summary)  # a `running` one whose batch process is gone: abandoned
    warn(problems)
    if as_json:
        echo_json(summary)
        return
    from mdivicomtools.cli.batch_view import render_summary
    from mdivicomtools.cli.textui import fields

    pairs = [
        ("batch", summary.batch_id),
        ("status", summary.status),
        ("plugin", f"{summary.plugin} {summary.plugin_version}"),
        ("executor", summary.executor + (f" ({summary.scheduler})" if summary.scheduler else "")),
        ("jobs", str(summary.jobs)),
        ("retries", str(summary.retries)),
        ("started", summary.started_at),
        ("duration", "-" if summary.duration_s is None else f"{summary.duration_s:.2f}s"),
        ("sessions", _counts(summary)),
    ]
    if summary.slurm_job_ids or summary.slurm_partition:
        pairs.append(("partition", summary.slurm_partition or "(the cluster's default)"))
        pairs.append(("slurm jobs", " ".join(summary.slurm_job_ids) or "-"))
    click.echo(fields(pairs))
    click.echo()
    # where it was read: results travel (archived, copied to another machine), and the
    # summary's out_dir names the folder the batch ran in
    from mdivicomtools.model.layout import batch_summary_path

    here = Path(out).absolute()
    click.echo(render_summary(summary, str(batch_summary_path(here, summary.batch_id)), str(here)))
