"""`mdivicom run`: run one plugin on a dataset."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mdivicomtools.cli.output import echo_json, request_fast_exit, terminal_may_be_gone
from mdivicomtools.cli.params import CPUS, JSON_OR_PATH, PATH, SECONDS, WHOLE

if TYPE_CHECKING:
    from mdivicomtools.batch.session import SessionJob, SessionResult
    from mdivicomtools.model.options import BatchOptions, ExecutorName, RunOptions
    from mdivicomtools.model.run import RunRecord


#: problems shown per invalid sidecar in a run's summary (the record keeps every one)
SUMMARY_PROBLEMS = 10


def _summary(record: RunRecord) -> str:
    from mdivicomtools.cli.textui import fields
    from mdivicomtools.common.text import printable

    pairs: list[tuple[str, str]] = [
        (record.status, f"{record.plugin.ref} {record.plugin.version} in {record.duration_s:.2f} s")
    ]
    if record.error is not None:
        # one line: a plugin's message must not add lines that look like the summary's
        pairs.append(("error", printable(f"{record.error.type}: {record.error.message}")))
    if record.status == "succeeded":
        pairs.append(("outputs", f"{record.out_dir}/ ({len(record.outputs)} file(s))"))
    else:
        pairs.append(("outputs", f"{record.out_dir}/ was not changed"))
    pairs.append(("record", f"{record.run_out_dir}/_runs/{record.run_id}.json"))
    if record.log:
        pairs.append(("log", f"{record.run_out_dir}/{record.log}"))
    for used in record.input_bundles:
        # which run's output this run read: the dataset folder names only the latest one
        kind = f" ({used.type})" if used.type else ""
        made = f" by {used.producer}" if used.producer else ""
        made += f" in run {used.producer_run_id}" if used.producer_run_id else ""
        pairs.append(("input", printable(f"{used.path}{kind}{made}")))
    for bundle in record.resultbundles:
        state = "valid" if bundle.valid else "INVALID"
        kind = f" ({bundle.type})" if bundle.type else ""  # none from an unreadable sidecar
        pairs.append(("bundle", f"{bundle.path}{kind}: {state}"))
        # a sidecar listing thousands of missing files printed a line for each
        shown = bundle.problems[:SUMMARY_PROBLEMS]
        pairs.extend(("problem", problem) for problem in shown)
        if len(bundle.problems) > len(shown):
            pairs.append(
                (
                    "problem",
                    f"{len(bundle.problems) - len(shown)} more problem(s) not shown; the "
                    "record's resultbundles and `mdivicom bundles validate` list every one",
                )
            )
    pairs.extend(("warning", w) for w in record.warnings)
    for e in record.hook_errors:
        # a module that failed to load is recorded under the hook "(load)": not "((load))"
        hook = e.hook if e.hook.startswith("(") else f"({e.hook})"
        pairs.append(("hook error", f"{e.plugin} {hook}: {e.error}"))
    return fields(pairs)


@click.command("run")
@click.argument("ref")
@click.option(
    "--dataset", required=True, type=PATH, metavar="DIR", help="The dataset folder (read-only)."
)
@click.option(
    "--out",
    required=True,
    type=PATH,
    metavar="DIR",
    help="The run root: outputs go to DIR/<id>/, records to DIR/_runs/.",
)
@click.option(
    "--config",
    "config_option",
    type=JSON_OR_PATH,
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
    "--work",
    type=PATH,
    metavar="DIR",
    help="A work folder to keep (default: a temporary one inside --out).",
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
    type=SECONDS,
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
    "--hash-dataset",
    is_flag=True,
    default=None,
    help="Record the dataset's content digest (sha256 of every file, cached by inode and "
    "times) [default: hash_dataset in the user config, else a stat fingerprint only].",
)
@click.option(
    "--memory",
    metavar="SIZE",
    help="Container memory limit, e.g. 512m or 8g (overrides the manifest and user config).",
)
@click.option("--cpus", type=CPUS, metavar="N", help="Container CPU limit, e.g. 2 or 0.5.")
@click.option("--shm-size", metavar="SIZE", help="Size of the container's /dev/shm, e.g. 1g.")
@click.option(
    "--gpus",
    metavar="all|N|IDS|none",
    help="GPUs for the container: all, a count, ids such as 0,1, or none.",
)
@click.option(
    "--mount",
    "mounts",
    multiple=True,
    metavar="NAME=PATH",
    help="Host folder for a named read-only mount the plugin declares. Repeatable.",
)
@click.option(
    "--stop-grace",
    type=SECONDS,
    metavar="SECONDS",
    help="Seconds a stopped container gets between SIGTERM and SIGKILL [default: the "
    "manifest's stop_grace_s, else 5].",
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
    type=WHOLE,
    metavar="N",
    help="Sessions at once: worker processes (local, a Dask LocalCluster) or worker "
    "jobs (slurm) [default: the CPUs available here].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask", "slurm"]),
    default="local",
    show_default=True,
    help="Where sessions run: worker processes here, Dask, or Dask workers as Slurm jobs.",
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
    "--retries",
    type=WHOLE,
    default=0,
    show_default=True,
    metavar="N",
    help="With --sessions: rerun a session that failed (its worker lost included) up to N times.",
)
@click.option(
    "--slurm-partition",
    metavar="NAME",
    help="--executor slurm: the partition of the worker jobs [default: [slurm] partition "
    "in the user config, else the cluster's default].",
)
@click.option(
    "--slurm-time",
    metavar="D-HH:MM:SS",
    help="--executor slurm: each worker job's time limit [default: 01:00:00].",
)
@click.option(
    "--slurm-mem",
    metavar="SIZE",
    help="--executor slurm: each worker job's memory, e.g. 4GB [default: 2GB].",
)
@click.option(
    "--slurm-cpus",
    type=WHOLE,
    metavar="N",
    help="--executor slurm: CPUs of each worker job [default: 1].",
)
@click.option(
    "--slurm-account",
    metavar="NAME",
    help="--executor slurm: the account the worker jobs are charged to.",
)
@click.option(
    "--slurm-directive",
    "slurm_directives",
    multiple=True,
    metavar="LINE",
    help="--executor slurm: an extra #SBATCH line, e.g. '--qos=short' (repeatable).",
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
    hash_dataset: bool | None,
    memory: str | None,
    cpus: float | None,
    shm_size: str | None,
    gpus: str | None,
    mounts: tuple[str, ...],
    stop_grace: float | None,
    sessions: str | None,
    jobs: int | None,
    executor: ExecutorName,  # a click.Choice of exactly these
    scheduler: str | None,
    resume: bool,
    retries: int,
    slurm_partition: str | None,
    slurm_time: str | None,
    slurm_mem: str | None,
    slurm_cpus: int | None,
    slurm_account: str | None,
    slurm_directives: tuple[str, ...],
    as_json: bool,
    strict_hooks: bool | None = None,
) -> None:
    """Run the plugin REF (<id> or <publisher>/<id>) on a dataset.

    Exit status: 0 succeeded (or dry run), 1 the plugin failed, 2 nothing was
    run (bad input), 74 the run's record could not be written, 124 timed out,
    130 interrupted, 141 the reader of its output went away.
    """
    from mdivicomtools.cli.supervisor import EXIT_INTERRUPTED
    from mdivicomtools.common.signals import interrupt_name
    from mdivicomtools.model.options import BatchOptions, RunOptions
    from mdivicomtools.model.run import EXIT_CODES
    from mdivicomtools.runner import RunInterrupted, run_plugin

    def progress(message: str) -> None:
        from mdivicomtools.common.text import printable

        click.echo(f"[mdivicom] {printable(message)}", err=True)

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
        hash_dataset=hash_dataset,
        memory=memory,
        cpus=cpus,
        shm_size=shm_size,
        gpus=gpus,
        mounts=mounts,
        stop_grace=stop_grace,
        strict_hooks=strict_hooks,
    )
    if scheduler is not None and executor != "dask":
        raise click.UsageError(
            "--scheduler names a Dask scheduler; add --executor dask (without it the "
            "sessions would run here, on local workers)"
        )
    slurm_given = (slurm_partition, slurm_time, slurm_mem, slurm_cpus, slurm_account)
    if sessions is not None:
        if executor != "slurm" and (slurm_directives or any(v is not None for v in slurm_given)):
            raise click.UsageError(
                "the --slurm-* options set the worker jobs of --executor slurm; add it "
                "(without it they would be ignored)"
            )
        batch = BatchOptions(
            sessions=sessions,
            jobs=jobs,
            executor=executor,
            scheduler=scheduler,
            resume=resume,
            retries=retries,
            slurm_partition=slurm_partition,
            slurm_time=slurm_time,
            slurm_mem=slurm_mem,
            slurm_cpus=slurm_cpus,
            slurm_account=slurm_account,
            slurm_directives=slurm_directives,
        )
        _run_batch(ref, options, batch, as_json=as_json, progress=progress)
    batch_only = {
        "--jobs": jobs is not None,
        "--executor": executor != "local",
        "--scheduler": scheduler is not None,
        "--resume": resume,
        "--retries": bool(retries),
        **{
            f"--slurm-{name}": value is not None
            for name, value in zip(
                ("partition", "time", "mem", "cpus", "account"), slurm_given, strict=True
            )
        },
        "--slurm-directive": bool(slurm_directives),
    }
    given = [name for name, is_given in batch_only.items() if is_given]
    if given:
        from mdivicomtools.common.text import named_options

        raise click.UsageError(
            f"{named_options(given)} {'needs' if len(given) == 1 else 'need'} --sessions GLOB "
            "(a batch, one run per session); add it, or leave "
            f"{'it' if len(given) == 1 else 'them'} out for a single run"
        )

    interrupted_by: str | None = None
    try:
        verbose = bool(click.get_current_context().find_root().params.get("verbose"))
        record = run_plugin(ref, options, progress=progress, echo=sys.stderr, verbose=verbose)
    except RunInterrupted as exc:
        record = exc.record
        interrupted_by = interrupt_name(exc)
    with terminal_may_be_gone(interrupted_by is not None):
        if as_json:
            echo_json(record)
        else:
            click.echo(_summary(record))
        if interrupted_by is not None:
            # the one line, and the code, every command ends with on a signal: also when
            # only a provenance hook was cut short and the record kept `succeeded`, so a
            # script (or the shell waiting on it) stops as the person meant
            click.echo(f"Error: interrupted by {interrupted_by}", err=True)
    request_fast_exit()  # the record is written and the engine connection closed
    if interrupted_by is not None:
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
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

    interrupted_by: str | None = None
    try:
        with sigterm_as_interrupt():
            summary = run_batch(
                ref, options, batch, progress=progress, on_start=on_start, on_event=on_event
            )
    except BatchSummaryInterrupted as exc:
        summary, interrupted_by = exc.summary, exc.by
    finally:
        if view is not None:
            with terminal_may_be_gone(interrupted_by is not None):
                view.close()
    with terminal_may_be_gone(interrupted_by is not None):
        if as_json:
            echo_json(summary)
        else:
            click.echo(render_summary(summary, str(summary.path)))
        if interrupted_by is not None:  # the one line every command ends with on a signal
            click.echo(f"Error: interrupted by {interrupted_by}", err=True)
    code = 130 if interrupted_by is not None else (1 if summary.status == "failed" else 0)
    raise click.exceptions.Exit(code)
