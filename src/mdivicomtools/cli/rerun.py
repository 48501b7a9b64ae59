"""`mdivicom rerun`: repeat a recorded run exactly and compare its outputs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import PATH, SECONDS

if TYPE_CHECKING:
    from mdivicomtools.runner.rerun import RerunReport


def render_rerun(report: RerunReport) -> str:
    from mdivicomtools.cli.textui import fields
    from mdivicomtools.common.text import printable

    record = report.record
    pairs = [
        (record.status, f"{record.plugin.ref} {record.plugin.version}, rerun of {report.original}"),
        ("record", f"{record.run_out_dir}/_runs/{record.run_id}.json"),
        ("outputs", f"{record.out_dir}/"),
    ]
    if record.error is not None:
        pairs.append(("error", printable(f"{record.error.type}: {record.error.message}")))
    if report.moved_from_backend:
        pairs.append(
            (
                "backend",
                f"{record.backend.name} (the original ran on {report.moved_from_backend}; "
                "MDIVICOM_BACKEND chose)",
            )
        )
    if report.image:
        pairs.append(("image", f"pinned to {report.image}"))
    checks = (
        ("config", report.config_matches),
        ("dataset", report.dataset_matches),
        ("mounts", report.mounts_match),
    )
    pairs.extend(
        (label, "same as the original" if same else "DIFFERENT")
        for label, same in checks
        if same is not None
    )
    pairs.append(("identical", f"{len(report.identical)} file(s)"))
    pairs.extend(("same data", f"{path} (only its run stamps differ)") for path in report.stamped)
    pairs.extend(("differs", path) for path in report.differing)
    pairs.extend(("missing", path) for path in report.missing)
    pairs.extend(("extra", path) for path in report.extra)
    pairs.extend(("not recorded", note) for note in report.unrecorded)
    return fields(pairs)


@click.command("rerun")
@click.argument("out", type=PATH)
@click.argument("run_id")
@click.option(
    "--out",
    "new_out",
    type=PATH,
    metavar="DIR",
    help="Where the rerun writes [default: OUT/_reruns/<id>/, never over the original].",
)
@click.option(
    "--dataset", type=PATH, metavar="DIR", help="The dataset, if it moved [default: the record's]."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a config key; needed for every value the record redacted (secrets). Repeatable.",
)
@click.option(
    "--allow-version-change",
    is_flag=True,
    help="Run even if the installed plugin version differs from the record's.",
)
@click.option(
    "--allow-differences",
    is_flag=True,
    help="Exit 0 even if the outputs differ from the original's (they are still reported).",
)
@click.option(
    "--timeout",
    type=SECONDS,
    metavar="SECONDS",
    help="Stop the plugin after this long [default: the original run's --timeout].",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the comparison and new record as JSON."
)
def rerun_command(
    out: str,
    run_id: str,
    new_out: str | None,
    dataset: str | None,
    sets: tuple[str, ...],
    allow_version_change: bool,
    allow_differences: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run RUN_ID (or `latest`) under OUT again, exactly, and compare the outputs.

    `latest` is the newest succeeded run. The same plugin version, config and
    dataset; for a container plugin the image the record pinned (by id). The
    new record names the original in `rerun_of`.

    Result bundle sidecars that differ only in their run stamps (`created_at`,
    `producer.pipeline_run_id`) count as the same data.

    Exit status: 0 identical outputs, 1 they differ (or the rerun failed),
    2 the run cannot be repeated (version, secret, image, bad input),
    74 the new run's record could not be written, 124 timed out, 130 interrupted,
    141 the reader of its output went away.
    """
    from mdivicomtools.model.run import EXIT_CODES
    from mdivicomtools.runner.rerun import rerun

    def progress(message: str) -> None:
        from mdivicomtools.common.text import printable

        click.echo(f"[mdivicom] {printable(message)}", err=True)

    report = rerun(
        out,
        run_id,
        new_out=new_out,
        dataset=dataset,
        sets=sets,
        allow_version_change=allow_version_change,
        timeout=timeout,
        progress=progress,
        echo=sys.stderr,
    )
    if as_json:
        echo_json(report)
    else:
        click.echo(render_rerun(report))
    status = report.record.status
    if status != "succeeded":
        raise click.exceptions.Exit(EXIT_CODES[status])
    raise click.exceptions.Exit(0 if report.same_outputs or allow_differences else 1)
