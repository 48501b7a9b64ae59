"""One run: validate -> stage -> execute -> finalise -> record.

Every outcome after validation (succeeded, failed, timed out, interrupted, dry
run) ends with a record in `<out>/_runs/`, and only a successful run replaces
`<out>/<id>/`. Problems found before anything runs are raised as
ValidationFailed (exit 2) and leave no trace.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import msgspec

from mdivicomtools.common.signals import Terminated, deferred_interrupts, sigterm_as_interrupt
from mdivicomtools.common.timefmt import iso, utc_now
from mdivicomtools.execution.base import ExecutionBackend
from mdivicomtools.execution.runlog import RunLog
from mdivicomtools.hooks.manager import HookManager
from mdivicomtools.model.run import (
    BackendInfo,
    DatasetInfo,
    ErrorInfo,
    HookError,
    HostInfo,
    RunOutcome,
    RunRecord,
    RunRequest,
)
from mdivicomtools.records.digest import DatasetManifest, scan_dataset, write_manifest
from mdivicomtools.records.owner import existing_output_problems
from mdivicomtools.records.store import write_record
from mdivicomtools.runner.config import config_sha256, redact
from mdivicomtools.runner.fingerprint import compare, fingerprint
from mdivicomtools.runner.prepare import Prepared, ValidationFailed
from mdivicomtools.runner.staging import create_staging, discard_staging, plugin_lock, promote

HOST_HOOK_MODULE = "mdivicomtools.host"

Progress = Callable[[str], None]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; its record was written first."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__(record.run_id)
        self.record = record


class Run:
    """The state of one run between validation and its record."""

    def __init__(
        self,
        request: RunRequest,
        backend: ExecutionBackend,
        hooks: HookManager,
        progress: Progress,
        echo: TextIO | None,
        verbose: bool = False,
    ) -> None:
        self.request = request
        self.verbose = verbose
        self.backend = backend
        self.hooks = hooks
        self.say = progress
        self.echo = echo
        self.hook_errors: list[HookError] = []
        self.dataset: DatasetInfo | None = None
        self.manifest: DatasetManifest | None = None

    def execute(self) -> tuple[RunRecord, KeyboardInterrupt | None]:
        request = self.request
        staging = create_staging(request.run_out_dir, request.run_id, request.plugin.id)
        request.work_dir.mkdir(parents=True, exist_ok=True)
        outcome = RunOutcome(status="failed", staging_dir=staging)
        started = utc_now()
        interrupt: KeyboardInterrupt | None = None
        with RunLog(request.log_path, echo=self.echo, echo_diagnostics=self.verbose) as log:
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
                log.diagnostic(traceback.format_exc())
                outcome.fail(type(exc).__name__, f"the {self.backend.name} backend failed: {exc}")
            with deferred_interrupts() as pending:
                record = self._finish(outcome, started, log)
            if pending and interrupt is None:
                interrupt = Terminated() if signal.SIGTERM in pending else KeyboardInterrupt()
        return record, interrupt

    def _execute(self, outcome: RunOutcome, log: RunLog) -> None:
        request = self.request
        if not self._scan_dataset(outcome):
            return
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

    def _scan_dataset(self, outcome: RunOutcome) -> bool:
        """Record what the dataset is before the plugin reads it; False fails the run."""
        request = self.request
        what = "hash" if request.hash_dataset else "list"
        try:
            self.dataset, self.manifest = scan_dataset(
                request.dataset_dir, contents=request.hash_dataset
            )
        except OSError as exc:
            fix = "make every file and folder of the dataset readable"
            if request.hash_dataset:
                fix += " (or run without --hash-dataset)"
            outcome.fail(
                "DatasetUnreadable",
                f"could not {what} the dataset {str(request.dataset_dir)!r}: {exc}; {fix}",
            )
            return False
        if self.dataset.digest:  # a stat fingerprint is too quick to be worth a line
            self.say(
                f"dataset: {self.dataset.files} file(s), {self.dataset.bytes} bytes, "
                f"digest {self.dataset.digest[:12]}"
            )
        return True

    def _finish(self, outcome: RunOutcome, started: datetime, log: RunLog) -> RunRecord:
        request = self.request
        if outcome.status == "succeeded" and request.dry_run:
            outcome.status = "dry_run"
        finalised = self.hooks.call("mdivicom_finalize_outputs", request=request, outcome=outcome)
        self.hook_errors.extend(finalised.errors)
        if outcome.status == "succeeded":
            try:
                promote(outcome.staging_dir, request.out_dir)
            except OSError as exc:
                outcome.fail("PromotionError", f"could not move the output into place: {exc}")
                outcome.outputs = []
        self.say(f"finalise: {outcome.status}, {len(outcome.outputs)} output file(s)")
        for warning in outcome.warnings:
            self.say(f"warning: {warning}")
        # the default work folder lives in staging and goes with it; a --work folder stays
        discard_staging(request.run_out_dir, request.run_id)
        captured = self.hooks.json_results(
            "mdivicom_capture_provenance", request=request, outcome=outcome
        )
        self.hook_errors.extend(captured.errors)
        for error in self.hook_errors:
            log.write(f"[mdivicom] hook {error.plugin!r} ({error.hook}) failed: {error.error}\n")
        provenance = dict(captured.results)
        host = _host(provenance.pop(HOST_HOOK_MODULE, None))
        if self.dataset is not None and self.manifest is not None:
            try:
                self.dataset.manifest = write_manifest(
                    request.run_out_dir, request.run_id, self.manifest
                )
            except OSError as exc:
                outcome.warnings.append(f"could not write the dataset file list: {exc}")
        finished = utc_now()
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
            started_at=iso(started),
            finished_at=iso(finished),
            duration_s=round((finished - started).total_seconds(), 3),
            exit_code=outcome.exit_code,
            error=outcome.error,
            outputs=outcome.outputs,
            resultbundles=outcome.resultbundles,
            host=host,
            extensions=provenance,
            container=outcome.container,
            dry_run=request.dry_run,
            result=outcome.result,
            log=str(request.log_path.relative_to(request.run_out_dir)),
            warnings=outcome.warnings,
            hook_errors=self.hook_errors,
            dataset=self.dataset,
            rerun_of=request.rerun_of,
            attempt=request.attempt,
        )
        write_record(request.record_path, record)
        self.say(f"record: {request.record_path}")
        return record


def _host(found: object) -> HostInfo:
    """The host hook's dict as the record's typed `host` (empty if it was disabled)."""
    try:
        return msgspec.convert(found or {}, HostInfo)
    except msgspec.ValidationError:
        return HostInfo()


def execute_prepared(
    prepared: Prepared,
    request: RunRequest,
    say: Progress,
    echo: TextIO | None,
    verbose: bool = False,
) -> RunRecord:
    """Validate `request`, then run it under the plugin's output lock and record it."""
    problems = prepared.problems(request)
    if problems:
        raise ValidationFailed(problems)
    say(f"validate: ok ({prepared.hooks.count('mdivicom_validate_run')} validation hook(s))")
    with plugin_lock(request.run_out_dir, request.plugin.id):
        # the output may have appeared since validation; decide again under the lock
        problems = existing_output_problems(request)
        if problems:
            raise ValidationFailed(problems)
        run = Run(request, prepared.backend, prepared.hooks, say, echo, verbose)
        record, interrupt = run.execute()
    if interrupt is not None:
        raise RunInterrupted(record) from interrupt
    return record
