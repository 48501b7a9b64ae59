"""`mdivicom verify`: re-hash a run's outputs and check its dataset against the record."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json
from mdivicomtools.cli.params import PATH

if TYPE_CHECKING:
    from mdivicomtools.records.verify import VerifyReport


def render_report(report: VerifyReport) -> str:
    """One block per run: a verdict line, then each difference on its own line.

    The paths are file names a plugin chose, the session a folder's name: each
    line is shown through `printable`, so a name holding a newline stays one line
    and one that is not UTF-8 shows its bytes as `\\xNN`, as the batch table does.
    """
    from pathlib import Path

    from mdivicomtools.common.text import printable

    where = f"{report.session}: " if report.session else ""
    if report.ok:
        verdict = "ok"
    elif report.modified or report.missing or report.extra or report.dataset.matches is not None:
        verdict = "DIFFERS"
    else:  # nothing found to differ, but the dataset could not be read to be sure
        verdict = "NOT CHECKED"
    lines = [f"{where}{report.plugin} run {report.run_id}: {verdict}"]
    if report.replaced_by_unfinished:
        root = Path(report.out_dir).parent
        lines.append(
            f"  run {report.replaced_by_unfinished} was replacing these outputs and has not "
            "recorded its end (its runner was killed, or it is still running): the recorded "
            f"outputs wait in {root / '_staging' / report.replaced_by_unfinished}; "
            f"`mdivicom runs clean {root}` puts them back once that run is dead"
        )
    if report.superseded_by:
        lines.append(
            f"  superseded by run {report.superseded_by}, whose outputs replaced this run's: "
            f"the differences below are that run's; `mdivicom rerun OUT {report.run_id}` "
            "repeats this one"
        )
    for label, paths in (
        ("modified", report.modified),
        ("missing", report.missing),
        ("extra", report.extra),
    ):
        lines.extend(f"  output {label}: {path}" for path in paths)
    unchanged = report.outputs - len(report.modified) - len(report.missing)
    lines.append(f"  outputs: {unchanged} of {report.outputs} file(s) as recorded")
    dataset = report.dataset
    if dataset.matches is None:
        lines.append(f"  dataset: not checked ({dataset.note})")
    elif dataset.checked == "missing":  # no "record's missing": nothing to compare with
        lines.append(f"  dataset: DIFFERS: {dataset.note} ({dataset.path})")
    elif dataset.matches:
        lines.append(f"  dataset: matches the record's {dataset.checked}")
    else:
        lines.append(f"  dataset: DIFFERS from the record's {dataset.checked} ({dataset.path})")
        for label, paths in (
            ("changed", dataset.changed),
            ("added", dataset.added),
            ("removed", dataset.removed),
        ):
            lines.extend(f"  dataset {label}: {path}" for path in paths)
        if not (dataset.changed or dataset.added or dataset.removed) and dataset.note:
            lines.append(f"  dataset: {dataset.note}")
    lines.extend(f"  input bundle: {line}" for line in dataset.bundles)
    return "\n".join(printable(line) for line in lines)


@click.command("verify")
@click.argument("out", type=PATH)
@click.argument("run_id", default="latest")
@click.option(
    "--all",
    "every_plugin",
    is_flag=True,
    help="Verify the latest succeeded run of every plugin under OUT (not only the newest run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as a JSON array.")
def verify_command(out: str, run_id: str, every_plugin: bool, as_json: bool) -> None:
    """Check that a run's outputs and dataset are still what its record says.

    OUT is a run's --out (or a batch's: then every session is checked); RUN_ID
    defaults to `latest`, the newest succeeded run (a note on stderr names the
    other plugins with outputs in OUT, which --all checks). The outputs are hashed
    again (modified, missing and extra files are named); the dataset is
    compared with the record's content digest, or its stat fingerprint.

    A batch session without a succeeded run kept no outputs: it is skipped,
    one line each saying why (on stderr with --json, whose output stays an
    array of reports); skipped sessions do not change the exit status.

    Exit status: 0 everything matches, 1 something differs (or the dataset could not
    be read to check it), 2 bad input.
    """
    from pathlib import Path

    from mdivicomtools.common.text import printable
    from mdivicomtools.records.verify import verify_all

    outcome = verify_all(Path(out), run_id, every_plugin=every_plugin)
    reports = outcome.reports
    skipped = [printable(s.describe()) for s in outcome.skipped]
    if as_json:
        echo_json(reports)
        for line in skipped:
            click.echo(line, err=True)
    else:
        click.echo("\n".join([*(render_report(r) for r in reports), *skipped]))
    for line in outcome.unchecked:  # a note, not a report: stdout stays the reports
        click.echo(f"note: {printable(line)}", err=True)
    raise click.exceptions.Exit(0 if all(r.ok for r in reports) else 1)
