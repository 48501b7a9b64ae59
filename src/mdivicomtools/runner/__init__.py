"""One run of one plugin, start to record: the only way anything is run.

`run_plugin(ref, options)` is the public API and what the CLI calls;
`check_runs` validates many targets at once for a batch. Modules: `prepare`
(plugin, config, hooks, backend and the frozen RunRequest), `run` (execute,
finalise, record), `staging` (lock, staging folder, promotion), `fingerprint`
(the dataset check), `config` (`--config`/`--set`, hash, redaction),
`containers` (a container plugin's resources, named mounts and hardening,
resolved into the request), `images` (the plugin images per engine, for
`mdivicom images`).

May import everything below it (`discovery`, `hooks`, `execution`, `records`,
`bundles`, `model`, `common`); only `batch`, `authoring` and `cli` import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from mdivicomtools.hooks.manager import HookManager
from mdivicomtools.model.options import RunOptions, given_call
from mdivicomtools.model.run import PluginInfo, RunRecord
from mdivicomtools.runner.prepare import Prepared, ValidationFailed
from mdivicomtools.runner.run import RunInterrupted, dataset_problems, execute_prepared

__all__ = [
    "CheckedRuns",
    "RunInterrupted",
    "RunOptions",
    "ValidationFailed",
    "check_runs",
    "run_plugin",
]

Progress = Callable[[str], None]


def _options(options: RunOptions | None, fields: dict[str, Any]) -> RunOptions:
    if options is None:
        return RunOptions.build(**fields)
    return options.with_changes(**fields) if fields else options


def while_shown(progress: Progress | None) -> Progress:
    """`progress`, until a line cannot be written.

    The reader of the progress lines may go away during a run (`mdivicom run
    ... 2>&1 | head`, a closed terminal): a BrokenPipeError from a line used to
    end the run between its `running` record and its final one, leaving the
    run abandoned and its staging behind. The record matters more than the
    lines, so the rest are dropped, as the run log's live echo does.
    """
    if progress is None:
        return lambda message: None
    if not callable(progress):  # `progress=True` failed at the first line with "not callable"
        raise TypeError(
            f"progress must be a function that takes one line (such as print), got {progress!r}"
        )
    shown = True

    def say(message: str) -> None:
        nonlocal shown
        if shown:
            try:
                progress(message)
            except OSError:
                shown = False

    return say


def run_plugin(
    ref: str,
    options: RunOptions | None = None,
    *,
    progress: Progress | None = None,
    echo: TextIO | None = None,
    hooks: HookManager | None = None,
    verbose: bool = False,
    **fields: Any,
) -> RunRecord:
    """Run the plugin `ref` as `options` say, writing into `out/<id>/` and `out/_runs/`.

    Pass a RunOptions, or its fields as keywords (`dataset=..., out=...`), or
    both (the keywords replace the options' fields). Returns the run record
    whatever the plugin did (check `record.status`). Raises a UsageError
    subclass when nothing could be run (unknown plugin, bad config, validation
    problems, output collision, another run holding the lock), and
    RunInterrupted (a KeyboardInterrupt) after recording a run that Ctrl-C,
    SIGTERM, SIGHUP or SIGQUIT stopped; a value of the wrong type is a
    TypeError before anything runs. `progress` receives one line per phase; `echo` receives
    the plugin's output live (it always goes to the run's log file); a failing
    plugin's traceback goes only to the log file unless `verbose`.
    docs/python-api.md lists the exceptions and where to import them.
    """
    options = _options(
        given_call("run_plugin", ref, options, RunOptions, "dataset=..., out=..."), fields
    )
    if echo is not None and not callable(getattr(echo, "write", None)):
        # `echo=True` ran the plugin and recorded the echo's AttributeError as its failure
        raise TypeError(
            f"echo must be a text stream with write() (such as sys.stdout), got {echo!r}"
        )
    say = while_shown(progress)
    with Prepared(ref, options, hooks) as prepared:
        plugin = prepared.plugin
        say(f"resolve: {plugin.ref} {plugin.version} ({plugin.kind}, from {prepared.found.origin})")
        request = prepared.request(options.dataset, options.out, options.work)
        return execute_prepared(prepared, request, say, echo, verbose)


class CheckedRuns(msgspec.Struct, kw_only=True, frozen=True):
    """What `check_runs` found: the plugin, the built config, its sha256, the backend
    the runs would use and each target's problems (empty when it may run)."""

    plugin: PluginInfo
    config: dict[str, Any]
    config_sha256: str
    backend: str
    problems: list[list[str]]


def check_runs(
    ref: str,
    targets: Sequence[tuple[str | Path, str | Path, str | Path | None]],
    options: RunOptions,
    dataset_checks: Sequence[list[str] | None] | None = None,
) -> CheckedRuns:
    """Validate many runs of one plugin without running any.

    `targets` are (dataset, out, work) triples; see CheckedRuns for what it returns.
    `dataset_checks`, one per target, are the problems of a dataset the caller
    has already walked and checked (`dataset_problems`); None walks that one here.
    Errors that concern every run alike (unknown plugin, bad config, no
    backend) are raised as the usual UsageError subclasses. Batch runs use this
    to report every problem before the first session starts. The backend's own
    checks (a container image present, pulled when the plugin says so) are the
    same for every run of one plugin, so they run once, not once per target.
    """
    with Prepared(ref, options, None) as prepared:
        backend_problems: list[str] | None = None
        problems = []
        checks = [None] * len(targets) if dataset_checks is None else dataset_checks
        for (dataset, out, work), checked in zip(targets, checks, strict=True):
            request = prepared.request(dataset, out, work)
            found = prepared.hook_problems(request) or (
                checked
                if checked is not None
                else dataset_problems(request.dataset_dir, contents=request.hash_dataset)
            )
            if not found:
                if backend_problems is None:
                    backend_problems = prepared.pull_ahead(request) or prepared._preflight(request)
                found = backend_problems
            problems.append(found)
        return CheckedRuns(
            plugin=prepared.plugin,
            config=prepared.config,
            config_sha256=prepared.config_sha256,
            backend=prepared.backend.name,
            problems=problems,
        )
