"""`mdivicom verify`: are these outputs, and this dataset, still what a run recorded?

The outputs are hashed again and compared with the record's inventory
(modified, missing and extra files, each named); the dataset is compared with
the record's digest when it has one (content: proves it), else with its stat
fingerprint (sizes and times: enough to notice a change on this machine).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

from mdivicomtools.common.safefs import disk_name, read_within
from mdivicomtools.common.text import os_reason
from mdivicomtools.errors import UsageError, given_path, given_run_id
from mdivicomtools.model.layout import BATCHES_DIR, STAGING_DIR, runs_dir
from mdivicomtools.model.run import OutputFile, RunHeader, RunRecord, status_words
from mdivicomtools.records.digest import compare_dataset, read_manifest, scan_dataset
from mdivicomtools.records.inventory import inventory
from mdivicomtools.records.owner import chained_output
from mdivicomtools.records.promotion import foreign_staging, promoting
from mdivicomtools.records.store import (
    RecordNotFound,
    RecordUnreadable,
    check_output_paths,
    choose_run,
    full_record,
    no_records,
    read_record,
    records_for,
    run_roots,
)

DatasetCheckKind = Literal["digest", "fingerprint", "not recorded", "missing"]


class OutputChanges(msgspec.Struct, kw_only=True, frozen=True):
    """Output files compared with an inventory, each list sorted by path."""

    modified: list[str] = []
    missing: list[str] = []
    extra: list[str] = []
    identical: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.modified or self.missing or self.extra)


def compare_outputs(expected: list[OutputFile], actual: list[OutputFile]) -> OutputChanges:
    before = {f.path: f for f in expected}
    after = {f.path: f for f in actual}
    common = before.keys() & after.keys()
    changed = {p for p in common if not _same_entry(before[p], after[p])}
    return OutputChanges(
        modified=sorted(changed),
        missing=sorted(before.keys() - after.keys()),
        extra=sorted(after.keys() - before.keys()),
        identical=sorted(common - changed),
    )


def _same_entry(recorded: OutputFile, now: OutputFile) -> bool:
    """Same type and digest. A symlink of an earlier release's record has no digest
    (its target was not recorded): only its type and target length can be compared."""
    if recorded.type != now.type:
        return False
    if recorded.type == "symlink" and not recorded.sha256:
        return recorded.size == now.size
    return recorded.sha256 == now.sha256


class DatasetCheck(msgspec.Struct, kw_only=True):
    """How the dataset compares with the record."""

    checked: DatasetCheckKind
    path: str
    matches: bool | None
    changed: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    note: str = ""
    #: the record's input bundles that are no longer what the run read, one line each
    #: naming the producer run it read and the one the file names now
    bundles: list[str] = []


class VerifyReport(msgspec.Struct, kw_only=True):
    """One run's verification: `ok` is True only when outputs and dataset both match."""

    run_id: str
    plugin: str
    session: str | None
    out_dir: str
    ok: bool
    outputs: int
    modified: list[str]
    missing: list[str]
    extra: list[str]
    dataset: DatasetCheck
    #: a later succeeded run of the same plugin in the same folder: its outputs replaced
    #: this run's, so the differences listed are that run's
    superseded_by: str | None = None
    #: a run of the same plugin that was replacing this output and has not recorded its
    #: end (its runner was killed, or it is still running): the output folder holds that
    #: run's output, and this run's waits in that run's staging folder
    replaced_by_unfinished: str | None = None


def recorded_dataset(record: RunRecord, run_root: Path | None = None) -> Path:
    """The record's dataset folder, re-based onto `run_root` as the outputs are.

    A chained run reads another plugin's output in the same --out
    (`results/sync-audio/dataset`). When that run root is moved or copied,
    its outputs are looked for where the record was found; the dataset must
    be too, or a copy is checked against the original's dataset (and a moved
    one is reported gone). A batch's session is the same one level up: its run
    root is `<out>/<session>/`, and a batch chained onto a plugin's output in
    the same --out reads `<out>/<id>/dataset/sessions/<session>`, which moves
    with the batch's --out. A dataset outside both stays where the record says.
    The record's text is turned into this process's name for the folder
    (`disk_name`): a record written in a UTF-8 locale names `ses-ü` in UTF-8.
    """
    dataset = Path(os.path.normpath(_dataset_on_disk(record.dataset_dir)))
    if run_root is None:
        return dataset
    recorded_root = Path(os.path.normpath(disk_name(record.run_out_dir)))
    moves = [(recorded_root, run_root)]
    if (run_root.parent / BATCHES_DIR).is_dir():  # a session of the batch's --out above
        moves.append((recorded_root.parent, run_root.parent))
    for old, new in moves:
        try:
            return new / dataset.relative_to(old)
        except ValueError:
            continue
    return dataset


def _dataset_on_disk(text: str) -> str:
    """The folder a record's `dataset_dir` names.

    A folder whose name is not UTF-8 (a batch's `ses-\\xff02`) is recorded in the
    escaped form of `display_name`, but `dataset_dir` has no `escaped` flag as an
    output has: read as written, it named no folder, and verify said a dataset
    that was there `is gone`. The text is read as written first, then, when
    that names nothing, in its escaped reading.
    """
    literal = disk_name(text)
    if "\\" not in text or os.path.lexists(literal):
        return literal
    unescaped = disk_name(text, escaped=True)
    return unescaped if os.path.lexists(unescaped) else literal


class SkippedSession(msgspec.Struct, kw_only=True, frozen=True):
    """A session of a batch that `verify` did not check, and why (it kept no outputs).

    `session` is None for the folder's own runs, when a batch's --out is also a
    run root of its own.
    """

    session: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.session or 'the folder itself'}: skipped: {self.reason}"


class VerifyOutcome(msgspec.Struct, kw_only=True):
    """The reports of a run root or a batch, and the batch's sessions that had none.

    `unchecked` names the other plugins whose outputs a folder holds when only
    the newest succeeded run was verified (`latest` without `--all`): `verify
    results` of a run root shared by two plugins said `ok`, exit 0, with the
    older plugin's outputs altered, and nothing told that they were not looked at.
    """

    reports: list[VerifyReport]
    skipped: list[SkippedSession] = []
    unchecked: list[str] = []


def _skip_reason(records: list[RunHeader]) -> str:
    """Why a session has nothing to verify: its latest run did not succeed."""
    if not records:
        return "no run recorded"
    latest = records[-1]
    return (
        f"no succeeded run (its latest run {latest.run_id} "
        f"{status_words(latest.status)}; a run that did not succeed keeps no outputs)"
    )


def check_dataset(
    record: RunRecord, dataset_dir: Path | None = None, run_root: Path | None = None
) -> DatasetCheck:
    """Compare the dataset (the record's, or `dataset_dir`) with what the record saw.

    `run_root` is where the record was found (its manifest is beside it),
    which may differ from the recorded `run_out_dir` after the folder moved;
    a dataset that lay inside the recorded run root is looked for under it.
    """
    path = dataset_dir or recorded_dataset(record, run_root)
    recorded = record.dataset
    if recorded is None:
        return DatasetCheck(
            checked="not recorded",
            path=str(path),
            matches=None,
            note="the record predates dataset fingerprints; only the outputs were checked",
        )
    kind: DatasetCheckKind = "digest" if recorded.digest else "fingerprint"
    if not path.is_dir():
        return DatasetCheck(
            checked="missing", path=str(path), matches=False, note="the dataset folder is gone"
        )
    try:
        current, now = scan_dataset(path, contents=recorded.digest is not None)
    except PermissionError as exc:
        # a colleague's folder in a shared dataset: unknown, not changed (it said DIFFERS)
        where = f": {str(exc.filename)!r}" if exc.filename else ""
        return DatasetCheck(
            checked=kind,
            path=str(path),
            matches=None,
            note=f"this user may not read all of it: {exc.strerror or exc}{where}; verify as "
            "a user who can",
        )
    except OSError as exc:
        return DatasetCheck(
            checked=kind, path=str(path), matches=False, note=f"unreadable: {os_reason(exc, path)}"
        )
    changes = compare_dataset(
        recorded,
        read_manifest(run_root or Path(disk_name(record.run_out_dir)), recorded.manifest),
        current,
        now,
    )
    return DatasetCheck(
        checked=kind,
        path=str(path),
        matches=not changes,
        changed=changes.changed,
        added=changes.added,
        removed=changes.removed,
        note=changes.describe() if changes else "",
    )


def changed_input_bundles(record: RunRecord, dataset: Path) -> list[str]:
    """Each of the record's input bundles whose sidecar is no longer the one it read.

    A chained run's dataset is another plugin's output, replaced by its next
    run: the changed dataset files say that something changed, this says which
    producer run the recorded run consumed and which one the folder holds now.
    """
    lines = []
    chained = chained_output(dataset)
    for used in record.input_bundles:
        if used.sha256 is None:
            continue  # it could not be read then: nothing to compare with
        path = dataset / used.path
        # read where the run read it: inside the dataset, or the output a chained
        # dataset lies in for one above it (a sidecar made a link out of the
        # dataset since was read wherever it led: a host file, /proc/kmsg)
        within = dataset
        if PurePosixPath(used.path).parts[:1] == ("..",):
            within = chained.folder if chained else Path(os.path.normpath(path)).parent
        unread = ""
        try:
            raw = read_within(within, path)
        except FileNotFoundError:
            raw, unread = None, "it is gone"
        except OSError as exc:
            raw, unread = None, f"it cannot be read now ({os_reason(exc, path)})"
        if raw is not None and hashlib.sha256(raw).hexdigest() == used.sha256:
            continue
        was = f"run {used.producer_run_id}" if used.producer_run_id else "an unnamed run"
        by = f" of {used.producer}" if used.producer else ""
        if raw is None:
            now = unread
        else:
            named = _pipeline_run_id(raw)
            now = f"it now names run {named}" if named else "it has changed"
        lines.append(f"{used.path}: this run read it as written by {was}{by}; {now}")
    return lines


def _pipeline_run_id(raw: bytes) -> str | None:
    """`producer.pipeline_run_id` of a sidecar's bytes, if they hold one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    producer = data.get("producer") if isinstance(data, dict) else None
    named = producer.get("pipeline_run_id") if isinstance(producer, dict) else None
    return named if isinstance(named, str) else None


def verify_record(
    record: RunRecord,
    *,
    session: str | None = None,
    run_root: Path | None = None,
    superseded_by: str | None = None,
) -> VerifyReport:
    """Hash the record's output folder again and check its dataset.

    The output folder is `<run_root>/<plugin id>`: results travel, so the
    folder the record was found in counts, not the path recorded at run time.
    A record listing an output outside that folder was altered: it is refused
    (`UnsafeRecordPath`, exit 2), as `runs export` refuses it, rather than
    reported as a missing output.
    """
    if record.status != "succeeded":
        raise UsageError(
            f"run {record.run_id} {status_words(record.status)}, so it kept no outputs to "
            "verify; name a succeeded run, or use 'latest'"
        )
    check_output_paths(record, session)
    out_dir = (
        run_root / record.plugin.id if run_root is not None else Path(disk_name(record.out_dir))
    )
    actual = inventory(out_dir) if out_dir.is_dir() else []
    changes = compare_outputs(record.outputs, actual)
    unfinished = _unfinished_promotion(out_dir.parent, record.plugin.id) if changes else None
    dataset = check_dataset(record, run_root=run_root)
    dataset.bundles = changed_input_bundles(record, Path(dataset.path))
    return VerifyReport(
        run_id=record.run_id,
        plugin=record.plugin.ref,
        session=session,
        out_dir=str(out_dir),
        # a dataset that could not be read is not verified, though not known to differ
        ok=not changes and (dataset.matches is True or dataset.checked == "not recorded"),
        outputs=len(record.outputs),
        modified=changes.modified,
        missing=changes.missing,
        extra=changes.extra,
        dataset=dataset,
        superseded_by=superseded_by,
        replaced_by_unfinished=unfinished,
    )


def _unfinished_promotion(run_root: Path, plugin_id: str) -> str | None:
    """The run whose promotion of `plugin_id`'s output is not committed, if any.

    A run killed between moving its output into place and writing its final
    record leaves its output in `<run_root>/<id>/` and the previous one in its
    staging folder, until `runs clean` (or the next run) puts it back: `verify`
    then finds the recorded output changed, and said only that.
    """
    try:
        folders = sorted((run_root / STAGING_DIR).iterdir())
    except OSError:
        return None
    for folder in folders:
        if foreign_staging(folder) is not None:
            continue  # no runner of this user made it: `runs clean` leaves it alone
        try:
            named = promoting(folder)
        except OSError:
            continue
        if named != plugin_id:
            continue
        try:  # a `succeeded` record committed it: a successor, not an unfinished run
            if read_record(runs_dir(run_root) / f"{folder.name}.json").status == "succeeded":
                continue
        except (OSError, msgspec.DecodeError):
            pass
        return folder.name
    return None


def _successor(records: list[RunHeader], record: RunHeader) -> str | None:
    """The newest later succeeded run of the same plugin, whose outputs replaced `record`'s."""
    position = next(index for index, candidate in enumerate(records) if candidate is record)
    later = records[position + 1 :]
    found = [r.run_id for r in later if r.status == "succeeded" and r.plugin.id == record.plugin.id]
    return found[-1] if found else None


def _pick(
    records: list[RunHeader], run_id: str, every_plugin: bool, where: Path
) -> list[RunHeader]:
    done = [r for r in records if r.status == "succeeded"]
    if every_plugin:
        latest: dict[str, RunHeader] = {}
        for record in done:
            latest[record.plugin.ref] = record
        return list(latest.values())
    # `latest` and a run id (or a unique start of one) as `rerun` and `runs export` take them
    why = "verify checks a succeeded run, the one whose outputs the folder holds"
    return [choose_run(records, where, run_id, kept_why=why)]


def _not_picked(
    records: list[RunHeader], chosen: list[RunHeader], run_id: str, every_plugin: bool
) -> list[str]:
    """Each other plugin with a succeeded run in this folder, as `lab/other (run <id>)`,
    when `latest` without `--all` checked only the newest succeeded run."""
    if every_plugin or run_id != "latest":
        return []
    picked = {header.plugin.ref for header in chosen}
    latest: dict[str, str] = {}
    for header in records:
        if header.status == "succeeded" and header.plugin.ref not in picked:
            latest[header.plugin.ref] = header.run_id
    return [f"{ref} (run {run})" for ref, run in latest.items()]


def _unchecked_note(out: Path, where: str, others: list[str]) -> str:
    return (
        f"not checked{where}: the outputs of {', '.join(others)}; `latest` is the newest "
        f"succeeded run only: `mdivicom verify {out} --all` checks every plugin's"
    )


def verify_out(
    out: str | Path, run_id: str = "latest", *, every_plugin: bool = False
) -> list[VerifyReport]:
    """Verify a run root, or every session of a batch's --out.

    `latest` is the newest succeeded run; `every_plugin` verifies the newest
    succeeded run of each plugin (each plugin's output folder holds only its
    latest run). For a batch folder, each session is checked the same way.
    A string is taken as a path, as `run_plugin` and `rerun` take it.
    `verify_all` also says which sessions were skipped.
    """
    return verify_all(out, run_id, every_plugin=every_plugin).reports


def verify_all(
    out: str | Path, run_id: str = "latest", *, every_plugin: bool = False
) -> VerifyOutcome:
    """`verify_out`, with each batch session that had no succeeded run and why.

    Such a session kept no outputs to verify; leaving it out silently made a
    batch with failed sessions read as wholly verified.
    """
    out = Path(given_path(out, "out"))
    given_run_id(run_id)
    if not out.is_dir():
        raise UsageError(f"{str(out)!r} is not a folder; give the --out of a run or a batch")
    roots = run_roots(out)
    own = bool(roots) and roots[0].session is None
    if run_id != "latest" and roots and not own:
        raise UsageError(
            f"{str(out)!r} is a batch folder; verify a single run with "
            f"`mdivicom verify {out}/<session> {run_id}`"
        )
    if not roots or (own and (run_id != "latest" or len(roots) == 1)):
        # a plain run root, or one run of a folder that is also a batch's --out
        records = records_for(out, run_id)
        if not records:
            raise no_records(out)
        chosen = _pick(records, run_id, every_plugin, out)
        if not chosen:
            raise RecordNotFound(f"no succeeded run recorded in {str(out)!r}")
        others = _not_picked(records, chosen, run_id, every_plugin)
        return VerifyOutcome(
            reports=[
                verify_record(
                    full_record(header), run_root=out, superseded_by=_successor(records, header)
                )
                for header in chosen
            ],
            unchecked=[_unchecked_note(out, "", others)] if others else [],
        )
    # a batch's --out: every session, and the folder's own runs when it has any (a
    # batch chained onto a plugin's output in the same --out)
    reports = []
    skipped: list[SkippedSession] = []
    unchecked: list[str] = []
    for root in roots:
        try:
            records = records_for(root.folder, run_id)
        except RecordUnreadable as exc:
            skipped.append(SkippedSession(session=root.session, reason=str(exc)))
            continue
        if not any(r.status == "succeeded" for r in records):
            skipped.append(SkippedSession(session=root.session, reason=_skip_reason(records)))
            continue
        chosen = _pick(records, run_id, every_plugin, root.folder)
        others = _not_picked(records, chosen, run_id, every_plugin)
        if others:
            where = f" in {root.session}" if root.session else ""
            unchecked.append(_unchecked_note(out, where, others))
        for header in chosen:
            reports.append(
                verify_record(
                    full_record(header),
                    session=root.session,
                    run_root=root.folder,
                    superseded_by=_successor(records, header),
                )
            )
    if not reports:
        where = "nothing" if own else "no session"
        raise RecordNotFound(f"{where} under {str(out)!r} has a succeeded run")
    return VerifyOutcome(reports=reports, skipped=skipped, unchecked=unchecked)
