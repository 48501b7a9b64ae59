"""One run: resolve -> validate -> stage -> execute -> finalise -> record.

`run_plugin` is the public API and the CLI's only way to run anything. Every
outcome after validation (succeeded, failed, timed out, interrupted, dry run)
ends with a record in `<out>/_runs/`, and only a successful run replaces
`<out>/<id>/`. Problems found before anything runs are raised as
ValidationFailed (exit 2) and leave no trace.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from mdivicomtools.config import build_config, config_sha256, redact
from mdivicomtools.discovery import (
    ENTRY_POINT_GROUP,
    PluginRecord,
    resolve,
    scan_entry_points,
)
from mdivicomtools.errors import MdivicomError, UsageError
from mdivicomtools.execution import (
    ExecutionBackend,
    choose_backend,
    close_backends,
    collect_backends,
)
from mdivicomtools.fingerprint import compare, fingerprint
from mdivicomtools.hooks import HOOK_GROUP, HookManager, load_hooks
from mdivicomtools.records import new_run_id, write_record
from mdivicomtools.run_types import (
    BackendInfo,
    ErrorInfo,
    HookError,
    HostInfo,
    PluginInfo,
    RunOutcome,
    RunRecord,
    RunRequest,
)
from mdivicomtools.runlog import RunLog
from mdivicomtools.signals import Terminated, deferred_interrupts, sigterm_as_interrupt
from mdivicomtools.staging import (
    create_staging,
    discard_staging,
    plugin_lock,
    promote,
    staging_root,
)
from mdivicomtools.userconfig import configured_strict_bundles

HOST_HOOK_MODULE = "mdivicomtools.host"

Progress = Callable[[str], None]


class ValidationFailed(UsageError):
    """Pre-run checks found problems; all of them are listed, nothing was run."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the run was not started:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; its record was written first."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__(record.run_id)
        self.record = record


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plugin_info(record: PluginRecord) -> PluginInfo:
    assert record.spec is not None
    meta = record.spec.meta
    return PluginInfo(
        id=meta.id,
        publisher=meta.effective_publisher,
        version=meta.version,
        kind=meta.kind,
        api_version=meta.api_version,
        source=record.source,
        distribution=record.distribution,
    )


def _validate(hooks: HookManager, request: RunRequest) -> list[str]:
    results, errors = hooks.call_each("mdivicom_validate_run", request=request)
    problems: list[str] = []
    for _name, found in results:
        problems.extend(str(p) for p in (found or []))
    problems.extend(f"validation hook {e.plugin!r} raised {e.error}" for e in errors)
    return problems


class _Run:
    """The state of one run between validation and its record."""

    def __init__(
        self,
        request: RunRequest,
        backend: ExecutionBackend,
        hooks: HookManager,
        progress: Progress,
        echo: TextIO | None,
    ) -> None:
        self.request = request
        self.backend = backend
        self.hooks = hooks
        self.say = progress
        self.echo = echo
        self.hook_errors: list[HookError] = []

    def execute(self) -> tuple[RunRecord, KeyboardInterrupt | None]:
        request = self.request
        staging = create_staging(request.run_out_dir, request.run_id, request.plugin.id)
        request.work_dir.mkdir(parents=True, exist_ok=True)
        outcome = RunOutcome(status="failed", staging_dir=staging)
        started = _utc_now()
        interrupt: KeyboardInterrupt | None = None
        with RunLog(request.log_path, echo=self.echo) as log:
            try:
                with sigterm_as_interrupt():
                    self._execute(outcome, log)
            except KeyboardInterrupt as exc:
                interrupt = exc
                outcome.status = "interrupted"
                outcome.exit_code = None
                how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C (SIGINT)"
                outcome.error = ErrorInfo(type="Interrupted", message=f"interrupted by {how}")
            except Exception as exc:  # a backend bug: still record the run
                log.write(traceback.format_exc())
                outcome.fail(type(exc).__name__, f"the {self.backend.name} backend failed: {exc}")
            with deferred_interrupts() as pending:
                record = self._finish(outcome, started, log)
            if pending and interrupt is None:
                interrupt = Terminated() if signal.SIGTERM in pending else KeyboardInterrupt()
        return record, interrupt

    def _execute(self, outcome: RunOutcome, log: RunLog) -> None:
        request = self.request
        before = fingerprint(request.dataset_dir) if request.plugin.kind == "python" else None
        self.say(f"run: {request.plugin.ref} {request.plugin.version} on {self.backend.name}")
        self.backend.execute(request, outcome, log)
        if before is not None:
            changes = compare(before, fingerprint(request.dataset_dir))
            if changes:
                outcome.fail(
                    "DatasetModified",
                    "the plugin modified the dataset, which is read-only: " + changes.describe(),
                )

    def _finish(self, outcome: RunOutcome, started: datetime, log: RunLog) -> RunRecord:
        request = self.request
        if outcome.status == "succeeded" and request.dry_run:
            outcome.status = "dry_run"
        _, errors = self.hooks.call_each(
            "mdivicom_finalize_outputs", request=request, outcome=outcome
        )
        self.hook_errors.extend(errors)
        if outcome.status == "succeeded":
            try:
                promote(outcome.staging_dir, request.out_dir)
            except OSError as exc:
                outcome.fail("PromotionError", f"could not move the output into place: {exc}")
                outcome.outputs = []
        self.say(f"finalise: {outcome.status}, {len(outcome.outputs)} output file(s)")
        # the default work folder lives in staging and goes with it; a --work folder stays
        discard_staging(request.run_out_dir, request.run_id)
        provenance, errors = self.hooks.json_results(
            "mdivicom_capture_provenance", request=request, outcome=outcome
        )
        self.hook_errors.extend(errors)
        for error in self.hook_errors:
            log.write(f"[mdivicom] hook {error.plugin!r} ({error.hook}) failed: {error.error}\n")
        host = provenance.pop(HOST_HOOK_MODULE, None) or {}
        finished = _utc_now()
        record = RunRecord(
            run_id=request.run_id,
            status=outcome.status,
            plugin=request.plugin,
            backend=BackendInfo(name=self.backend.name, engine=outcome.engine),
            dataset_dir=str(request.dataset_dir),
            out_dir=str(request.out_dir),
            run_out_dir=str(request.run_out_dir),
            work_dir=str(request.work_dir),
            config=redact(request.config),
            config_sha256=config_sha256(request.config),
            started_at=_iso(started),
            finished_at=_iso(finished),
            duration_s=round((finished - started).total_seconds(), 3),
            exit_code=outcome.exit_code,
            error=outcome.error,
            outputs=outcome.outputs,
            resultbundles=outcome.resultbundles,
            host=HostInfo(
                hostname=str(host.get("hostname", "")),
                platform=str(host.get("platform", "")),
                python=str(host.get("python", "")),
                mdivicomtools=str(host.get("mdivicomtools", "")),
            ),
            extensions=provenance,
            container=outcome.container,
            dry_run=request.dry_run,
            result=outcome.result,
            log=str(request.log_path.relative_to(request.run_out_dir)),
            warnings=outcome.warnings,
            hook_errors=self.hook_errors,
        )
        write_record(request.record_path, record)
        self.say(f"record: {request.record_path}")
        return record


def run_plugin(
    ref: str,
    *,
    dataset: str | Path,
    out: str | Path,
    config: str | dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    work: str | Path | None = None,
    backend: str | None = None,
    dry_run: bool = False,
    timeout: float | None = None,
    overwrite: bool = False,
    isolate: bool = False,
    strict_bundles: bool | None = None,
    progress: Progress | None = None,
    echo: TextIO | None = None,
    hooks: HookManager | None = None,
) -> RunRecord:
    """Run the plugin `ref` on `dataset`, writing into `out/<id>/` and `out/_runs/`.

    Returns the run record whatever the plugin did (check `record.status`).
    Raises a UsageError subclass when nothing could be run (unknown plugin, bad
    config, validation problems, output collision, another run holding the
    lock), and RunInterrupted (a KeyboardInterrupt) after recording a run that
    Ctrl-C or SIGTERM stopped. `progress` receives one line per phase; `echo`
    receives the plugin's output live (it always goes to the run's log file).
    `strict_bundles` fails a run that wrote an invalid result bundle (default:
    `strict_bundles` in the user config file, else False).
    """
    say = progress or (lambda message: None)
    found, plugin, run_config, hooks = _prepare(ref, config, sets, timeout, hooks)
    say(f"resolve: {plugin.ref} {plugin.version} ({plugin.kind}, from {found.origin})")
    backends = collect_backends(hooks)
    try:
        chosen = choose_backend(backend, plugin.kind, backends)
        request = _request(
            found,
            plugin,
            run_config,
            chosen,
            dataset,
            out,
            work,
            dry_run,
            timeout,
            overwrite,
            isolate,
        )
        request.strict_bundles = (
            strict_bundles if strict_bundles is not None else configured_strict_bundles()
        )
        return _run_with(chosen, hooks, request, say, echo)
    finally:
        close_backends(backends)


def _prepare(
    ref: str,
    config: str | dict[str, Any] | None,
    sets: Iterable[str],
    timeout: float | None,
    hooks: HookManager | None,
) -> tuple[PluginRecord, PluginInfo, dict[str, Any], HookManager]:
    """What every run of `ref` needs first: the plugin, its config and the hooks.

    One entry-point scan serves both plugin resolution and hook loading.
    """
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    scan = scan_entry_points(ENTRY_POINT_GROUP, HOOK_GROUP)
    found = resolve(ref, entry_points=scan[ENTRY_POINT_GROUP])
    plugin = _plugin_info(found)
    run_config = build_config(config, sets)
    return found, plugin, run_config, hooks or load_hooks(entry_points=scan[HOOK_GROUP])


def check_runs(
    ref: str,
    targets: Sequence[tuple[str | Path, str | Path, str | Path | None]],
    *,
    config: str | dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    backend: str | None = None,
    dry_run: bool = False,
    timeout: float | None = None,
    overwrite: bool = False,
    isolate: bool = False,
) -> tuple[PluginInfo, str, list[list[str]]]:
    """Validate many runs of one plugin without running any.

    `targets` are (dataset, out, work) triples. Returns the plugin, the
    config's sha256 and each target's problems (empty when it may run). Errors
    that concern every run alike (unknown plugin, bad config, no backend) are
    raised as the usual UsageError subclasses. Batch runs use this to report
    every problem before the first session starts.
    """
    found, plugin, run_config, hooks = _prepare(ref, config, sets, timeout, None)
    backends = collect_backends(hooks)
    try:
        chosen = choose_backend(backend, plugin.kind, backends)
        all_problems = []
        for dataset, out, work in targets:
            request = _request(
                found,
                plugin,
                run_config,
                chosen,
                dataset,
                out,
                work,
                dry_run,
                timeout,
                overwrite,
                isolate,
            )
            problems = _validate(hooks, request)
            all_problems.append(problems or _preflight(chosen, request))
    finally:
        close_backends(backends)
    return plugin, config_sha256(run_config), all_problems


def _request(
    found: PluginRecord,
    plugin: PluginInfo,
    run_config: dict[str, Any],
    chosen: ExecutionBackend,
    dataset: str | Path,
    out: str | Path,
    work: str | Path | None,
    dry_run: bool,
    timeout: float | None,
    overwrite: bool,
    isolate: bool,
) -> RunRequest:
    assert found.spec is not None
    run_id = new_run_id()
    run_out_dir = Path(out).expanduser().absolute()
    work_dir = (
        Path(work).expanduser().absolute()
        if work is not None
        else staging_root(run_out_dir, run_id) / "_work"
    )
    return RunRequest(
        run_id=run_id,
        plugin=plugin,
        spec=found.spec,
        dataset_dir=Path(dataset).expanduser().absolute(),
        run_out_dir=run_out_dir,
        out_dir=run_out_dir / plugin.id,
        work_dir=work_dir,
        config=run_config,
        backend=chosen.name,
        dry_run=dry_run,
        timeout=timeout,
        isolate=isolate or (timeout is not None and plugin.kind == "python"),
        overwrite=overwrite,
    )


def _preflight(backend: ExecutionBackend, request: RunRequest) -> list[str]:
    """The backend's own pre-run checks (a container image present, its pin matching)."""
    preflight = getattr(backend, "preflight", None)
    if preflight is None:
        return []
    try:
        return list(preflight(request))
    except MdivicomError as exc:
        return [f"backend {backend.name!r}: {exc}"]


def _run_with(
    chosen: ExecutionBackend,
    hooks: HookManager,
    request: RunRequest,
    say: Progress,
    echo: TextIO | None,
) -> RunRecord:
    problems = _validate(hooks, request)
    if not problems:
        problems = _preflight(chosen, request)
    if problems:
        raise ValidationFailed(problems)
    checks = len(hooks.pm.hook.mdivicom_validate_run.get_hookimpls())
    say(f"validate: ok ({checks} validation hook(s))")
    with plugin_lock(request.run_out_dir, request.plugin.id):
        # the output may have appeared since validation; decide again under the lock
        from mdivicomtools.builtin_hooks.validation import check_existing_output

        problems = check_existing_output(request)
        if problems:
            raise ValidationFailed(problems)
        run = _Run(request, chosen, hooks, say, echo)
        record, interrupt = run.execute()
    if interrupt is not None:
        raise RunInterrupted(record) from interrupt
    return record
