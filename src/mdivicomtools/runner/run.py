"""One run: validate -> record `running` -> stage -> execute -> finalise -> record.

Every outcome after validation (succeeded, failed, timed out, interrupted, dry
run) ends with a record in `<out>/_runs/`, and only a successful run replaces
`<out>/<id>/`. The record is first written with status `running` before
anything is staged, so a runner killed with SIGKILL still leaves a record that
`runs list` shows as `abandoned`, and the next run into the same folder (or
`mdivicom runs clean`) removes its staging. The final record is written after
the staging data is freed, so a full disk still gets a record; if even that
fails the run raises RecordNotWritten (exit 74). Problems found before
anything runs are raised as ValidationFailed (exit 2) and leave no trace.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO

import msgspec

from mdivicomtools.bundles.inputs import input_bundles
from mdivicomtools.common import supervision
from mdivicomtools.common.jsonio import find_unsafe_json
from mdivicomtools.common.safefs import Removal
from mdivicomtools.common.secrets import scrub_all
from mdivicomtools.common.signals import (
    deferred_interrupts,
    interrupt_name,
    interruption,
    interrupts_raise,
    signal_of,
    signals_seen,
    sigterm_as_interrupt,
)
from mdivicomtools.common.text import os_reason, some
from mdivicomtools.common.timefmt import iso, utc_now
from mdivicomtools.common.units import format_size
from mdivicomtools.errors import RecordNotWritten
from mdivicomtools.execution.base import ExecutionBackend, outcome_problems
from mdivicomtools.execution.runlog import RunLog
from mdivicomtools.hooks.builtin.host import mdivicom_capture_provenance as host_provenance
from mdivicomtools.hooks.manager import HookManager, HookResults
from mdivicomtools.model.layout import runs_dir, staging_root
from mdivicomtools.model.run import (
    BackendInfo,
    ContainerInfo,
    DatasetInfo,
    ErrorInfo,
    HookError,
    HostInfo,
    InputBundle,
    RunOutcome,
    RunRecord,
    RunRequest,
)
from mdivicomtools.records.digest import (
    DatasetEntry,
    DatasetManifest,
    scan_dataset,
    unreadable_files,
    write_manifest,
)
from mdivicomtools.records.inventory import list_outputs
from mdivicomtools.records.owner import (
    chained_output,
    existing_output_problems,
    replaced_meanwhile,
)
from mdivicomtools.records.store import runner_identity, write_record
from mdivicomtools.runner.config import config_sha256, redact
from mdivicomtools.runner.datasetlinks import unreachable_links_note
from mdivicomtools.runner.datasetwalk import DatasetWalk, walk_dataset
from mdivicomtools.runner.debris import remove_dead_runs
from mdivicomtools.runner.fingerprint import Fingerprint, changes_since, compare, fingerprint
from mdivicomtools.runner.hookwrites import HookWrites
from mdivicomtools.runner.prepare import Prepared, ValidationFailed
from mdivicomtools.runner.staging import (
    check_staging_writable,
    create_staging,
    discard_staging,
    plugin_lock,
    promote,
    roll_back,
)

HOST_HOOK_MODULE = "mdivicomtools.host"
#: an output this large, or of this many files, gets a line before it is hashed (some
#: seconds at the inventory's speed on a busy machine or a network file system)
HASH_NOTICE_BYTES = 1024**3
HASH_NOTICE_FILES = 20_000

Progress = Callable[[str], None]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP stopped a run; its record was written first. `by`
    names the signal as the record does (`Ctrl-C (SIGINT)`, `SIGTERM`, `SIGHUP`)."""

    def __init__(self, record: RunRecord, by: str = "Ctrl-C (SIGINT)") -> None:
        # what a notebook's traceback shows: which run, what stopped it, where its record is
        super().__init__(
            f"run {record.run_id} of {record.plugin.ref} was interrupted by {by}; "
            f"its record is {runs_dir(Path(record.run_out_dir)) / (record.run_id + '.json')}"
        )
        self.record = record
        self.by = by


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
        before: Fingerprint | None = None,
        engine: str | None = None,
        files: list[DatasetEntry] | None = None,
        backend_errors: list[HookError] | None = None,
        notes: list[str] | None = None,
        who: str | None = None,
    ) -> None:
        self.request = request
        #: warnings known before the run starts (the choice of its backend)
        self.notes = list(notes or [])
        #: what the backend reported running on, when its execute does not say
        self.engine = engine
        self.verbose = verbose
        self.backend = backend
        #: the backend and the hook module that provides it, for its own mistakes
        self.who = who or f"the {backend.name} backend"
        self.hooks = hooks
        # every line the run shows may quote the plugin (its warnings): never a secret
        self.say: Progress = lambda message: progress(scrub_all(message, request.config))
        self.echo = echo
        self.dataset: DatasetInfo | None = None
        self.manifest: DatasetManifest | None = None
        self.input_bundles: list[InputBundle] = []
        self.before = before
        #: the dataset's files from the walk `before` came from, for its digest and
        #: manifest (None: walked here); let go once they are recorded
        self.files = files
        #: the other plugin's output the dataset lies in: its sidecars above the dataset
        #: are inputs too, and its replacement by that plugin's next run is no write
        self.chained = chained_output(request.dataset_dir)
        #: (device, inode) of `_runs/` once the first record is in it
        self.records_at: tuple[int, int] | None = None
        # a hook module that failed to load is left out of the run: say so, and record it
        # (said before validation: broken_hook_warnings)
        self.hook_errors: list[HookError] = [
            HookError(hook="(load)", plugin=module.name, error=module.error or "broken")
            for module in hooks.broken
        ]
        # a backends hook that raised or returned no backend is the run's hook error too
        self.hook_errors += backend_errors or []

    def execute(self) -> tuple[RunRecord, KeyboardInterrupt | None]:
        request = self.request
        started = utc_now()
        outcome = RunOutcome(
            status="running",
            staging_dir=request.run_out_dir / "_staging" / request.run_id / request.plugin.id,
            warnings=list(self.notes),
        )
        try:
            # before anything is staged: a runner killed from here on leaves this record
            write_record(request.record_path, self._record(outcome, started, started, {}))
        except OSError as exc:
            raise RecordNotWritten(
                f"the run was not started: cannot write its record {str(request.record_path)!r} "
                f"({exc.strerror or exc}); free space or fix the folder's permissions"
            ) from None
        # the folder the records go in: one moved or deleted during the run is not
        # made again for the final record (`_same_folder`)
        self.records_at = _folder_identity(runs_dir(request.run_out_dir))
        supervision.run_started(
            request.record_path, staging_root(request.run_out_dir, request.run_id)
        )
        outcome.status = "failed"
        interrupt: KeyboardInterrupt | None = None
        with RunLog(request.log_path, echo=self.echo, echo_diagnostics=self.verbose) as log:
            try:
                with sigterm_as_interrupt():
                    outcome.staging_dir = create_staging(
                        request.run_out_dir, request.run_id, request.plugin.id
                    )
                    request.work_dir.mkdir(parents=True, exist_ok=True)
                    self._execute(outcome, log)
            except KeyboardInterrupt as exc:
                interrupt = exc
                outcome.status = "interrupted"
                outcome.exit_code = None
                during = f" while {outcome.activity}" if outcome.activity else ""
                outcome.error = ErrorInfo(
                    type="Interrupted", message=f"interrupted by {interrupt_name(exc)}{during}"
                )
            except OSError as exc:  # disk full, permissions: name the cause, not the backend
                log.diagnostic(traceback.format_exc())
                outcome.fail(type(exc).__name__, f"the run could not continue: {exc}")
            except Exception as exc:  # a backend bug: still record the run
                log.diagnostic(traceback.format_exc())
                outcome.fail(type(exc).__name__, f"{self.who} failed: {exc}")
            with deferred_interrupts() as pending:
                try:
                    record = self._finish(outcome, started, log, pending)
                finally:
                    supervision.run_finished(request.record_path)
            if pending and interrupt is None:
                interrupt = interruption(pending)
        return record, interrupt

    def _execute(self, outcome: RunOutcome, log: RunLog) -> None:
        request = self.request
        if not self._scan_dataset(outcome):
            return
        # held here alone: gone once the check after the plugin is made, before the
        # record's manifest is encoded (one entry per dataset file, as that is)
        before, self.before = self.before, None
        self.say(f"run: {request.plugin.ref} {request.plugin.version} on {self.backend.name}")
        # what a backend prints, or a tool it starts writes to descriptor 1 (an
        # `apptainer exec` with inherited stdout), goes to the run log: on stdout it
        # broke `--json`, which promises one JSON document
        try:
            with log.capture_stdout_fd(), signals_seen() as seen:
                self.backend.execute(request, outcome, log)
        finally:
            # a last print without a newline must not take in the next line
            log.end_line()
        if seen:
            # the KeyboardInterrupt a signal raised was caught (by the backend, or an
            # in-process plugin) and execute() returned: the signal still stops the run
            stop = interruption(seen)
            outcome.warnings.append(
                f"{interrupt_name(stop)} arrived while {self.who} ran the plugin, and its "
                "execute() returned instead of re-raising the KeyboardInterrupt; the run "
                "is recorded interrupted (a backend cleans up and re-raises)"
            )
            raise stop
        self._check_outcome(outcome)
        if outcome.status == "failed" and outcome.error is None:
            # a site's backend that returned without saying how the run ended
            outcome.error = ErrorInfo(
                type="BackendError",
                message=f"{self.who} ended the run without a status or an error",
            )
        outcome.engine = outcome.engine or self.engine
        if outcome.status == "succeeded" and not outcome.staging_dir.is_dir():
            # else the inventory failed on it, and the record said `the output could
            # not be listed`, which named neither the folder nor what became of it
            outcome.fail(
                "StagingLost",
                f"the run's output folder {str(outcome.staging_dir)!r} is gone: the plugin "
                f"removed it, or --out {str(request.run_out_dir)!r} was moved or deleted "
                "while the run ran; nothing was promoted",
            )
        if before is not None:
            changes = changes_since(before, request.dataset_dir)
            if changes:
                replaced = replaced_meanwhile(self.chained) if self.chained else None
                if replaced is None:
                    said = "the plugin modified the dataset, which is read-only: "
                    outcome.fail("DatasetModified", said + changes.describe())
                else:  # not the plugin's doing: blaming it sent people debugging the wrong code
                    outcome.fail(
                        "DatasetModified",
                        f"{replaced}: {changes.describe()}; run again on the new output",
                    )

    def _check_outcome(self, outcome: RunOutcome) -> None:
        """Fail a run whose backend left values the record cannot hold, saying which.

        The record is written from the outcome: a site backend's string in
        `outcome.error` crashed the runner and left the record `running`, an unknown
        status was written as it was. What breaks the contract is undone.
        """
        problems = outcome_problems(outcome)
        if problems:
            if not isinstance(outcome.exit_code, int) or isinstance(outcome.exit_code, bool):
                outcome.exit_code = None
            if not isinstance(outcome.container, ContainerInfo):
                outcome.container = None
            if not isinstance(outcome.engine, str):
                outcome.engine = None
            outcome.fail(
                "BackendError",
                f"{self.who} broke the backend contract: {'; '.join(problems)} "
                "(docs/extending.md#execution-backends)",
            )
        unsafe = find_unsafe_json(outcome.result, "result")
        if unsafe is not None:
            outcome.result = None
            outcome.warnings.append(f"{self.who} set a result that was not kept: {unsafe}")

    def _scan_dataset(self, outcome: RunOutcome) -> bool:
        """Record what the dataset is before the plugin reads it; False fails the run."""
        request = self.request
        what = "hash" if request.hash_dataset else "list"
        try:
            self.dataset, self.manifest = scan_dataset(
                request.dataset_dir,
                contents=request.hash_dataset,
                progress=self.say,
                walked=self.files,
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
        finally:
            self.files = None  # the manifest holds what is kept of them
        self.input_bundles = input_bundles(
            request.dataset_dir,
            (entry.path for entry in self.manifest.files),
            above=self.chained.folder if self.chained else None,
        )
        if self.dataset.digest:  # a stat fingerprint is too quick to be worth a line
            self.say(
                f"dataset: {self.dataset.files} file(s), {self.dataset.bytes} bytes, "
                f"digest {self.dataset.digest[:12]}"
            )
        return True

    def _finish(
        self, outcome: RunOutcome, started: datetime, log: RunLog, pending: list[int]
    ) -> RunRecord:
        request = self.request
        if outcome.status == "succeeded" and request.dry_run:
            outcome.status = "dry_run"
        staged = self._staged_tree(outcome)
        writes = HookWrites(outcome.staging_dir, {m.name for m in self.hooks.modules if m.builtin})
        if staged is not None:
            self._say_if_long_to_hash(staged)
        finalised = self._hooks_until_interrupted(
            pending,
            self.hooks.call,
            "mdivicom_finalize_outputs",
            watch=writes.watch if staged is not None else None,
            request=request,
            outcome=outcome,
        )
        if isinstance(finalised, KeyboardInterrupt):
            # a hung finalisation hook can be stopped; nothing unchecked is promoted
            cut = self.hooks.cut_short("mdivicom_finalize_outputs")
            if cut is not None:
                self.hook_errors.extend(cut.errors)
            outcome.status, outcome.exit_code = "interrupted", None
            outcome.error = ErrorInfo(
                type="Interrupted",
                message=f"interrupted by {interrupt_name(finalised)} while the outputs were "
                "finalised" + _in_module(cut),
            )
        else:
            self.hook_errors.extend(finalised.errors)
        if outcome.status == "succeeded" and any(
            e.plugin == "mdivicomtools.inventory" for e in self.hook_errors
        ):
            # an output that cannot even be listed is never promoted unseen
            outcome.fail("InventoryFailed", "the output could not be listed; see hook_errors")
        if outcome.status == "succeeded" and staged is not None:
            self._list_again_if_changed(outcome, staged, writes, log)
        if outcome.status != "succeeded":
            outcome.outputs = []  # the record lists only what was promoted
        if outcome.status == "succeeded":
            try:
                promote(outcome.staging_dir, request.out_dir)
            except OSError as exc:
                outcome.fail("PromotionError", f"could not move the output into place: {exc}")
                outcome.outputs = []
        self.say(f"finalise: {outcome.status}, {len(outcome.outputs)} output file(s)")
        for warning in outcome.warnings:
            if warning not in self.notes:  # said before the run started
                self.say(f"warning: {warning}")
        # the default work folder lives in staging and goes with it; a --work folder stays.
        # The previous output stays too, until the record says `succeeded`: a runner
        # killed before that has its promotion rolled back (runner.staging.roll_back)
        removal = discard_staging(request.run_out_dir, request.run_id, keep_promotion=True)
        if not removal.removed:
            # said in the record, not only by the next run that finds the debris
            outcome.warnings.append(_not_removed(removal))
            self.say(f"warning: {outcome.warnings[-1]}")
        captured = self._hooks_until_interrupted(
            pending,
            self.hooks.json_results,
            "mdivicom_capture_provenance",
            request=request,
            outcome=outcome,
        )
        if isinstance(captured, KeyboardInterrupt):
            # the output is in place and the run is what it was: only provenance is cut.
            # What the hooks that returned gave is kept; the one that was running is named
            cut = self.hooks.cut_short("mdivicom_capture_provenance")
            if cut is None:  # the signal came earlier: no site provenance hook is called
                why = (
                    f"interrupted by {interrupt_name(captured)} before the provenance hooks "
                    "were called; extensions are left out"
                )
                # the machine's facts are the core's own, and quick: the record keeps them
                captured = self.hooks.keep_json(
                    "mdivicom_capture_provenance",
                    HookResults(results=[(HOST_HOOK_MODULE, host_provenance())]),
                )
            else:
                why = (
                    f"interrupted by {interrupt_name(captured)}{_in_module(cut)}; the "
                    "provenance of the hooks that had not returned is left out"
                )
                captured = self.hooks.keep_json("mdivicom_capture_provenance", cut)
            self.hook_errors.append(
                HookError(
                    hook="mdivicom_capture_provenance",
                    plugin=(cut.running if cut is not None else None) or "(interrupted)",
                    error=why,
                )
            )
        self.hook_errors.extend(captured.errors)
        for error in self.hook_errors:
            log.write(f"[mdivicom] hook {error.plugin!r} ({error.hook}) failed: {error.error}\n")
        if log.lost is not None:
            outcome.warnings.append(f"the run log is incomplete: {log.lost}")
        records = runs_dir(request.run_out_dir)
        if _folder_identity(records) != self.records_at:
            # writing there would make a new, lone `_runs/` (and the folders above it)
            # where the operator moved or deleted the run root; the `running` record
            # went with the folder, and shows as abandoned where it is now
            raise RecordNotWritten(
                f"the run ended {outcome.status} but its record could not be written: "
                f"{str(records)!r} was moved or deleted while the run ran (with --out?), "
                "and is not made again; if it was moved, the run's first record went with "
                "it and shows as abandoned there (`mdivicom runs clean` on its new place "
                "removes what the run left)"
            )
        if self.dataset is not None and self.manifest is not None:
            try:
                self.dataset.manifest = write_manifest(request.run_out_dir, self.manifest)
            except (OSError, ValueError) as exc:  # the record must be written regardless
                outcome.warnings.append(f"could not write the dataset file list: {os_reason(exc)}")
        record = self._record(outcome, started, utc_now(), dict(captured.results))
        try:
            write_record(request.record_path, record)
        except OSError as first:
            # the staging data is already freed; one more try, then say so in one line
            try:
                write_record(request.record_path, record)
            except OSError:
                # a success no record tells of is not kept: the previous output goes back
                kept = ""
                with contextlib.suppress(OSError):  # else `runs clean` tries again
                    if roll_back(request.run_out_dir, request.run_id):
                        kept = f"; {request.out_dir} was left as it was before the run"
                    discard_staging(request.run_out_dir, request.run_id)
                raise RecordNotWritten(
                    f"the run ended {record.status} but its record could not be written to "
                    f"{str(request.record_path)!r} ({first.strerror or first}){kept}; "
                    "free space or make the folder writable (a read-only mount, its "
                    "permissions), and see `mdivicom runs list`"
                ) from None
        # committed: the previous output (and the rest of the staging) can go now
        removal = discard_staging(request.run_out_dir, request.run_id)
        if not removal.removed:  # too late for the record: said here, and by `runs clean`
            self.say(f"warning: {_not_removed(removal)}")
        self.say(f"record: {request.record_path}")
        return record

    def _hooks_until_interrupted(
        self,
        pending: list[int],
        call: Callable[..., HookResults],
        hook: str,
        **kwargs: object,
    ) -> HookResults | KeyboardInterrupt:
        """`call(hook, ...)` with Ctrl-C and SIGTERM live again: the hooks are a site's
        code, and a hung one must not make the run impossible to stop. A signal that
        came earlier (still pending) skips them."""
        if pending:
            return interruption(pending)
        try:
            with interrupts_raise():
                return call(hook, **kwargs)
        except KeyboardInterrupt as exc:
            pending.append(signal_of(exc))
            return exc

    def _staged_tree(self, outcome: RunOutcome) -> Fingerprint | None:
        """The staged output as the plugin left it, for `_list_again_if_changed`."""
        if outcome.status != "succeeded":
            return None
        try:
            return fingerprint(outcome.staging_dir)
        except OSError:
            return None  # the inventory hook reports an unreadable output

    def _say_if_long_to_hash(self, staged: Fingerprint) -> None:
        """A line before the output is hashed, when that takes a while: a plugin that
        wrote a 5 GB video or 200,000 files left the run silent after `run:` for
        tens of seconds while the inventory read it all, which reads as hung."""
        files = [entry[1] for entry in staged.values() if entry[0] == "f"]
        total = sum(files)
        if total >= HASH_NOTICE_BYTES or len(files) >= HASH_NOTICE_FILES:
            self.say(f"finalise: hashing {len(files)} output file(s), {format_size(total)}")

    def _list_again_if_changed(
        self, outcome: RunOutcome, staged: Fingerprint, writes: HookWrites, log: RunLog
    ) -> None:
        """The record lists what is promoted: a finalisation hook that wrote, changed or
        removed files in the staging folder, or put entries into outcome.outputs for
        files that are not there, gets the output listed (and checked) again. So does
        a process the plugin left running that writes there meanwhile.

        Whose change it was is told by `writes` (runner.hookwrites): a file a hook
        added is in the run log, a hook that changed or removed one of the plugin's
        files is a warning naming it, and what no hook made is the warning about a
        process the plugin left running (or a hook's own left-running thread)."""
        try:
            now = fingerprint(outcome.staging_dir)
        except OSError as exc:
            outcome.fail("InventoryFailed", f"the output could not be listed again: {exc}")
            return
        files = sorted(path for path, entry in now.items() if entry[0] != "d")
        if now == staged and sorted(o.path for o in outcome.outputs) == files:
            return
        list_outputs(outcome)
        if outcome.status != "succeeded":
            return
        changes = compare(staged, now)
        if not changes:
            outcome.warnings.append(
                "a finalisation hook changed outcome.outputs; the output was listed again"
            )
            return
        # which hook changed which files, so one that overwrote the plugin's own is seen
        warnings, lines = writes.reports(plugin_wrote=staged.keys())
        for line in lines:
            log.diagnostic(f"[mdivicom] {line}\n")
        outcome.warnings += warnings
        unexplained = writes.unexplained(changes)
        if unexplained:
            # the plugin's own processes may still be writing (an in-process plugin's
            # are not killed when it returns), or a thread a hook left running
            outcome.warnings.append(
                f"the output changed while it was finalised ({unexplained.describe(limit=5)}): "
                "a finalisation hook or a process the plugin left running wrote it; "
                "it was listed again"
            )

    def _record(
        self,
        outcome: RunOutcome,
        started: datetime,
        finished: datetime,
        provenance: dict[str, object],
    ) -> RunRecord:
        request = self.request
        host = _host(provenance.pop(HOST_HOOK_MODULE, None))
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
            input_bundles=self.input_bundles,
            attempt=request.attempt,
            runner=runner_identity(),
            timeout_s=request.timeout,
            isolate=request.isolate,
        )
        return _without_secrets(record, request.config)


def _folder_identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of `folder`, or None when it is not there."""
    try:
        stat = folder.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _in_module(cut: HookResults | None) -> str:
    """`` in hook module 'NAME'`` for the module an interrupt stopped, if known."""
    running = cut.running if cut is not None else None
    return f" in hook module {running!r}" if running else ""


def _without_secrets(record: RunRecord, config: object) -> RunRecord:
    """The record with the secret values of `config` scrubbed from the text the plugin
    controls: its error, warnings, result and the hook errors, and the
    provenance hooks' `extensions`.

    The config itself is already redacted; a plugin quoting a token in an
    exception or returning its config, or a provenance hook copying
    `request.config`, would otherwise put the value back into a record that
    is readable by the group and copied into crates.
    """
    error = record.error
    if error is not None:
        error = ErrorInfo(type=error.type, message=scrub_all(error.message, config))
    hook_errors = [
        HookError(hook=e.hook, plugin=e.plugin, error=scrub_all(e.error, config))
        for e in record.hook_errors
    ]
    return msgspec.structs.replace(
        record,
        error=error,
        warnings=scrub_all(record.warnings, config),
        result=scrub_all(record.result, config),
        extensions=scrub_all(record.extensions, config),
        hook_errors=hook_errors,
    )


def _not_removed(removal: Removal) -> str:
    return (
        f"could not remove all of the staging folder {removal.path}: "
        + some(removal.left, 3, "; ")
        + "; `mdivicom runs clean` removes it once it is writable"
    )


def _host(found: object) -> HostInfo:
    """The host hook's dict as the record's typed `host` (empty if it was disabled)."""
    try:
        return msgspec.convert(found or {}, HostInfo)
    except msgspec.ValidationError:
        return HostInfo()


def walk_before(dataset: Path, *, contents: bool = False) -> tuple[DatasetWalk | None, list[str]]:
    """The dataset's one walk before a run (`walk_dataset`), or the problem that
    refuses the run.

    An unreadable dataset is bad input, found before anything runs: a single run
    is refused with it, and a batch checks every session with this before the
    first one starts (it failed a session at run time, after others had run).
    With `contents` (--hash-dataset) every file is read, so each must open.
    """
    try:
        before = walk_dataset(dataset)
    except OSError as exc:
        return None, [_cannot_read(dataset, exc)]
    problems = _unopened(dataset, before.files) if contents else []
    return (None if problems else before), problems


def _unopened(dataset: Path, walked: list[DatasetEntry]) -> list[str]:
    """The problem of a --hash-dataset run whose dataset has files it cannot open."""
    try:
        unreadable = unreadable_files(dataset, walked=walked)
    except OSError as exc:
        return [_cannot_read(dataset, exc)]
    if not unreadable:
        return []
    named = some([f"{rel!r} ({why})" for rel, why in unreadable], 5)
    return [
        f"the dataset cannot be read for --hash-dataset: {named} in "
        f"{str(dataset)!r}; make every file readable, or run without --hash-dataset"
    ]


def dataset_problems(
    dataset: Path, *, contents: bool = False, walked: list[DatasetEntry] | OSError | None = None
) -> list[str]:
    """The problems `walk_before` would refuse a run with, walking no more than
    they need: a batch checks every session with this before the first one
    starts, and each session walks its dataset again when it runs, so the
    digest's file list is made here only for --hash-dataset (whose files must
    open), not for a fingerprint alone.

    `walked` is what a walk of the dataset already made gave (`walk_files`'
    list, or the OSError it raised): a batch's plan walks a session once for
    --resume and checks it with that walk instead of walking it again."""
    if isinstance(walked, OSError):
        return [_cannot_read(dataset, walked)]
    if walked is not None:
        return _unopened(dataset, walked) if contents else []
    if contents:
        return walk_before(dataset, contents=True)[1]
    try:
        fingerprint(dataset)
    except OSError as exc:
        return [_cannot_read(dataset, exc)]
    return []


def _cannot_read(dataset: Path, exc: OSError) -> str:
    return (
        f"the dataset cannot be read: {exc.strerror or exc}: "
        f"{str(exc.filename or dataset)!r}; "
        "give the user running mdivicom read access to every folder in it"
    )


def execute_prepared(
    prepared: Prepared,
    request: RunRequest,
    say: Progress,
    echo: TextIO | None,
    verbose: bool = False,
) -> RunRecord:
    """Validate `request`, then run it under the plugin's output lock and record it.

    The dataset is walked here, once, before the lock and the `running` record,
    for every backend (`walk_before`): its fingerprint is compared after the
    backend returns (Run._execute), where a change fails the run with
    DatasetModified whichever backend ran it, and its files give the record's
    digest and manifest.
    """
    for module in prepared.hooks.broken:  # before validation: a broken one may be a validator
        say(f"warning: hook module {module.name!r} is broken and left out: {module.error}")
    # a module the operator meant to disable that runs; a backend preference passed over
    notes = [*prepared.hooks.warnings, *prepared.backends.notes]
    for note in notes:
        say(f"warning: {note}")
    problems = prepared.problems(request)
    walk = None
    if not problems:
        # every backend: a container's read-only mount guards the mount, not the
        # files (a hard link in --work reaches them too), so the check is the same
        walk, problems = walk_before(request.dataset_dir, contents=request.hash_dataset)
    if problems or walk is None:
        raise ValidationFailed(problems)
    say(f"validate: ok ({prepared.hooks.count('mdivicom_validate_run')} validation hook(s))")
    links = (
        unreachable_links_note(request.dataset_dir, walk.fingerprint)
        if request.spec.meta.kind == "container"
        else None
    )
    if links is not None:
        say(f"warning: {links}")
        notes.append(links)
    with plugin_lock(request.run_out_dir, request.plugin.id):
        # first: a dead run's unfinished promotion may put the previous output back
        for removed in remove_dead_runs(request.run_out_dir, holding=request.plugin.id):
            say(f"cleaned: {removed}" if removed.done else f"warning: {removed}")
        # the output may have appeared since validation; decide again under the lock
        problems = existing_output_problems(request)
        if problems:
            raise ValidationFailed(problems)
        check_staging_writable(request.run_out_dir)
        run = Run(
            request,
            prepared.backend,
            prepared.hooks,
            say,
            echo,
            verbose,
            walk.fingerprint,
            engine=prepared.backends.availability(prepared.backend.name).engine,
            files=walk.files,
            backend_errors=prepared.backends.errors,
            notes=notes,
            who=prepared.backends.who(prepared.backend.name),
        )
        walk = None  # the run lets go of the files once they are recorded
        record, interrupt = run.execute()
    if interrupt is not None:
        raise RunInterrupted(record, interrupt_name(interrupt)) from interrupt
    return record
