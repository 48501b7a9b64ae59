"""`mdivicom run`: run one plugin on a dataset."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json

if TYPE_CHECKING:
    from mdivicomtools.batch.session import SessionJob, SessionResult
    from mdivicomtools.model.options import BatchOptions, RunOptions
    from mdivicomtools.model.run import RunRecord


def _summary(record: RunRecord) -> str:
    from mdivicomtools.cli.textui import fields

    pairs = [
        (record.status, f"{record.plugin.ref} {record.plugin.version} in {record.duration_s:.2f} s")
    ]
    if record.error is not None:
        pairs.append(("error", f"{record.error.type}: {record.error.message}"))
    if record.status == "succeeded":
        pairs.append(("outputs", f"{record.out_dir}/ ({len(record.outputs)} file(s))"))
    else:
        pairs.append(("outputs", f"{record.out_dir}/ was not changed"))
    pairs.append(("record", f"{record.run_out_dir}/_runs/{record.run_id}.json"))
    if record.log:
        pairs.append(("log", f"{record.run_out_dir}/{record.log}"))
    for bundle in record.resultbundles:
        state = "valid" if bundle.valid else "INVALID"
        pairs.append(("bundle", f"{bundle.path} ({bundle.type}): {state}"))
        pairs.extend(("problem", problem) for problem in bundle.problems)
    pairs.extend(("warning", w) for w in record.warnings)
    pairs.extend(("hook error", f"{e.plugin} ({e.hook}): {e.error}") for e in record.hook_errors)
    return fields(pairs)


@click.command("run")
@click.argument("ref")
@click.option("--dataset", required=True, metavar="DIR", help="The dataset folder (read-only).")
@click.option(
    "--out",
    required=True,
    metavar="DIR",
    help="The run root: outputs go to DIR/<id>/, records to DIR/_runs/.",
)
@click.option(
    "--config",
    "config_option",
    metavar="JSON_OR_PATH",
    help="Plugin config: a JSON object, or a .json/.toml file.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set one config key (dotted for nesting); VALUE is JSON when it parses. "
    "Repeatable; applied after --config.",
)
@click.option(
    "--work", metavar="DIR", help="A work folder to keep (default: a temporary one inside --out)."
)
@click.option(
    "--backend",
    metavar="NAME",
    help="auto, python, docker, podman or an installed backend "
    "[default: $MDIVICOM_BACKEND or auto].",
)
@click.option("--dry-run", is_flag=True, help="Pass dry_run to the plugin; outputs are not kept.")
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Stop the plugin after this long (exit 124); implies --isolate for python.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing DIR/<id>/, only once the new run has succeeded.",
)
@click.option(
    "--isolate",
    is_flag=True,
    help="Run a python plugin in a child process (survives crashes, allows timeouts).",
)
@click.option(
    "--strict-bundles",
    is_flag=True,
    default=None,
    help="Fail the run if it wrote an invalid resultbundle.json "
    "[default: strict_bundles in the user config, else off].",
)
@click.option(
    "--strict-hooks",
    is_flag=True,
    default=None,
    help="Refuse to run (exit 2) while an installed hook module is broken "
    "[default: strict_hooks in the user config, else a warning].",
)
@click.option(
    "--sessions",
    metavar="GLOB",
    help="Run once per matching DATASET/sessions/<session>/, into OUT/<session>/.",
)
@click.option(
    "--jobs",
    type=int,
    metavar="N",
    help="Sessions at once with --executor local [default: the CPUs available].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="Where sessions run: worker processes here, or Dask.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://host:8786 [default: $MDIVICOM_DASK_SCHEDULER, "
    "else a LocalCluster].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="With --sessions: skip sessions whose latest run succeeded with the same "
    "plugin version and config.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run record (or with --sessions the batch summary) as JSON.",
)
def run_command(
    ref: str,
    dataset: str,
    out: str,
    config_option: str | None,
    sets: tuple[str, ...],
    work: str | None,
    backend: str | None,
    dry_run: bool,
    timeout: float | None,
    overwrite: bool,
    isolate: bool,
    strict_bundles: bool | None,
    sessions: str | None,
    jobs: int | None,
    executor: str,
    scheduler: str | None,
    resume: bool,
    as_json: bool,
    strict_hooks: bool | None = None,
) -> None:
    """Run the plugin REF (<id> or <publisher>/<id>) on a dataset.

    Exit status: 0 succeeded (or dry run), 1 the plugin failed, 2 nothing was
    run (bad input), 124 timed out, 130 interrupted.
    """
    from mdivicomtools.model.options import BatchOptions, RunOptions
    from mdivicomtools.model.run import EXIT_CODES
    from mdivicomtools.runner import RunInterrupted, run_plugin

    def progress(message: str) -> None:
        click.echo(f"[mdivicom] {message}", err=True)

    # built once, here, and passed whole to a single run or to every session
    options = RunOptions.build(
        dataset=dataset,
        out=out,
        config=config_option,
        sets=sets,
        work=work,
        backend=backend,
        dry_run=dry_run,
        timeout=timeout,
        overwrite=overwrite,
        isolate=isolate,
        strict_bundles=strict_bundles,
        strict_hooks=strict_hooks,
    )
    if sessions is not None:
        batch = BatchOptions(
            sessions=sessions, jobs=jobs, executor=executor, scheduler=scheduler, resume=resume
        )
        _run_batch(ref, options, batch, as_json=as_json, progress=progress)
    if resume or jobs is not None or scheduler is not None or executor != "local":
        raise click.UsageError("--jobs, --executor, --scheduler and --resume need --sessions")

    try:
        record = run_plugin(ref, options, progress=progress, echo=sys.stderr)
    except RunInterrupted as exc:
        record = exc.record
    if as_json:
        echo_json(record)
    else:
        click.echo(_summary(record))
    raise click.exceptions.Exit(EXIT_CODES[record.status])


def _run_batch(
    ref: str,
    options: RunOptions,
    batch: BatchOptions,
    *,
    as_json: bool,
    progress: Callable[[str], None],
) -> None:
    from mdivicomtools.batch import BatchSummaryInterrupted, run_batch
    from mdivicomtools.cli.batch_view import BatchProgress, render_summary
    from mdivicomtools.common.signals import sigterm_as_interrupt

    view: BatchProgress | None = None

    def on_start(total: int) -> None:
        nonlocal view
        view = BatchProgress(total)

    def on_event(kind: str, job: SessionJob, result: SessionResult | None) -> None:
        if view is not None:
            view.event(kind, job, result)

    interrupted = False
    try:
        with sigterm_as_interrupt():
            summary = run_batch(
                ref, options, batch, progress=progress, on_start=on_start, on_event=on_event
            )
    except BatchSummaryInterrupted as exc:
        summary, interrupted = exc.summary, True
    finally:
        if view is not None:
            view.close()
    if as_json:
        echo_json(summary)
    else:
        click.echo(render_summary(summary, str(summary.path)))
    code = 130 if interrupted else (1 if summary.status == "failed" else 0)
    raise click.exceptions.Exit(code)
