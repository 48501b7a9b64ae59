"""Reading and writing run records (`<out>/_runs/<run_id>.json`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.common.durable import write_atomic
from mdivicomtools.common.jsonio import decode_layout, json_files, pretty
from mdivicomtools.common.platform import pid_alive
from mdivicomtools.common.safefs import path_problem
from mdivicomtools.common.text import os_reason
from mdivicomtools.common.timefmt import stamp_id
from mdivicomtools.errors import UsageError
from mdivicomtools.model.layout import RUNS_DIR, runs_dir
from mdivicomtools.model.run import (
    RUN_SCHEMA,
    ErrorInfo,
    RunHeader,
    RunnerInfo,
    RunRecord,
    status_words,
)


class RecordNotFound(UsageError):
    """`runs show` was asked for a run that has no record."""


class RecordUnreadable(UsageError):
    """The run asked for has a record this version cannot read: damaged, or of
    another layout (a newer release's `schema`)."""


class UnsafeRecordPath(UsageError):
    """A record lists an output path outside its output folder: the record was altered."""


def check_output_paths(record: RunRecord, session: str | None = None) -> None:
    """Refuse a record whose `outputs` name a path outside the plugin's output folder.

    The runner records only paths it found below that folder, so such a path
    means the record was edited; `verify` and `runs export` refuse it rather
    than hash or copy whatever file the path reaches.
    """
    for output in record.outputs:
        problem = path_problem(output.path)
        if problem is not None:
            where = f"{session}: " if session else ""
            raise UnsafeRecordPath(
                f"{where}the record of run {record.run_id} lists the output {output.path!r}, "
                f"{problem}; a run records only paths inside the plugin's output folder, "
                "so the record was altered and is refused"
            )


def new_run_id(now: datetime | None = None) -> str:
    """`<UTC YYYYmmddTHHMMSSZ>_<8 hex>`: sorts by start time, unique without coordination."""
    return stamp_id(now)


def write_record(path: Path, record: RunRecord) -> None:
    """Write a record atomically, readable by its owner and group only.

    A string that is not valid UTF-8 (a file name the plugin chose) never
    stops the record: `pretty` writes it in the escaped form `display_name` documents.
    """
    write_atomic(path, pretty(record))


def _kept(stored: Any, new: Any) -> Any:
    """`new`, with the object members only `stored` has put back, at every depth.

    Those are the fields this version does not know: a newer release of the
    same layout wrote them. Lists of the same length are kept item by item
    (the outputs of a record that is rewritten as `abandoned`).
    """
    if isinstance(stored, dict) and isinstance(new, dict):
        merged = {
            key: _kept(stored[key], value) if key in stored else value for key, value in new.items()
        }
        merged.update((key, value) for key, value in stored.items() if key not in merged)
        return merged
    if isinstance(stored, list) and isinstance(new, list) and len(stored) == len(new):
        return [_kept(old, value) for old, value in zip(stored, new, strict=True)]
    return new


def stored_document(path: Path) -> Any:
    """The record file as plain JSON, or None when it cannot be read."""
    try:
        return msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None


def record_document(path: Path, record: RunRecord) -> Any:
    """`record` as JSON values, with the fields of its file at `path` that it does not know.

    What `runs show --json` prints: the whole record, as this version reads it
    (defaults for fields an older release did not write) and with the fields
    a newer release added, which the typed record leaves out.
    """
    return _kept(stored_document(path), msgspec.to_builtins(record))


def rewrite_record(path: Path, record: RunRecord) -> None:
    """Write back a record read from `path` (`abandoned`, a dead runner's final status).

    The fields this version does not know are kept: a `running` record of a
    newer release, finished by this one, must not lose what that release
    recorded.
    """
    document = record_document(path, record)
    write_atomic(path, pretty(document))


def runner_identity() -> RunnerInfo:
    """This process, as the `runner` of the records it writes."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    return RunnerInfo(pid=os.getpid(), hostname=os.uname().nodename, boot_id=boot_id)


def lock_free(run_out_dir: Path, plugin_id: str) -> bool:
    """Whether nobody holds the plugin's output lock (a live run always does)."""
    lock_path = runs_dir(run_out_dir) / f".{plugin_id}.lock"
    try:
        handle = lock_path.open("rb")
    except OSError:
        return True
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def runner_gone(record: RunRecord | RunHeader, run_out_dir: Path) -> bool:
    """Whether the process that wrote a `running` record is gone.

    A live run holds its plugin's lock in `_runs/`, so a free lock proves the
    runner died. A held lock may belong to a newer run of the same plugin, so
    then the record's pid is checked when it ran on this machine since its last
    boot; a run on another machine with the lock held is taken to be alive.
    """
    if record.status != "running":
        return record.status == "abandoned"
    if lock_free(run_out_dir, record.plugin.id):
        return True
    runner = record.runner
    if runner is None:
        return False
    here = runner_identity()
    if runner.hostname != here.hostname:
        return False
    if runner.boot_id and here.boot_id and runner.boot_id != here.boot_id:
        return True
    return runner.pid != here.pid and not pid_alive(runner.pid)


def shown_status(record: RunRecord | RunHeader, run_out_dir: Path) -> str:
    """The status to show: `abandoned` for a `running` record whose runner died."""
    if record.status == "running" and runner_gone(record, run_out_dir):
        return "abandoned"
    return record.status


def read_record(path: Path) -> RunRecord:
    """One record; `ForeignLayout` (a `msgspec.DecodeError`) for another layout than v1."""
    return decode_layout(path.read_bytes(), RunRecord, RUN_SCHEMA)


def record_files(run_out_dir: Path) -> list[Path]:
    """The record files in `_runs/`; OSError when it cannot be listed (`json_files`)."""
    return json_files(runs_dir(run_out_dir))


def record_paths(run_out_dir: Path) -> list[Path]:
    """The record files under `run_out_dir`; none in a folder this user may not enter."""
    try:
        return record_files(run_out_dir)
    except OSError:
        return []


def _read_all(run_out_dir: Path) -> tuple[list[RunHeader], dict[Path, str]]:
    """The header of every readable record, oldest first, and why each other record
    file cannot be read (or `_runs/` itself, when another user made it private).

    Each record is read whole, so a damaged one is found as before, and only its
    header is kept: the memory stays that of one record however many there are.
    """
    headers: list[RunHeader] = []
    unreadable: dict[Path, str] = {}
    try:
        paths = record_files(run_out_dir)
    except OSError as exc:
        paths = []
        unreadable[runs_dir(run_out_dir)] = f"cannot be read ({exc.strerror or exc})"
    for path in paths:
        try:
            headers.append(RunHeader.of(read_record(path), path))
        except (OSError, msgspec.DecodeError) as exc:
            unreadable[path] = os_reason(exc, path)
    headers.sort(key=lambda r: (r.started_at, r.run_id))
    return headers, unreadable


def full_record(header: RunHeader) -> RunRecord:
    """The whole record `header` was read from: what a command works on, once it has
    chosen its run among the headers. `RecordUnreadable` when it is no longer readable
    (changed or removed since)."""
    path = Path(header.path)
    try:
        return read_record(path)
    except (OSError, msgspec.DecodeError) as exc:
        raise RecordUnreadable(
            f"the run record {str(path)!r} cannot be read: {os_reason(exc, path)}"
        ) from None


def load_records(run_out_dir: Path) -> tuple[list[RunHeader], list[str]]:
    """The header of every readable record, oldest first, and a warning per unreadable file (or
    for `_runs/` itself, when another user made it private)."""
    records, unreadable = _read_all(run_out_dir)
    return records, [
        f"{path}: {why}"
        if path == runs_dir(run_out_dir)
        else f"{path}: not a readable run record ({why})"
        for path, why in unreadable.items()
    ]


def records_for(run_out_dir: Path, run_id: str) -> list[RunHeader]:
    """The headers of the readable records, once it is sure that `run_id` does not mean
    an unreadable one.

    A record this version cannot read (damaged, or of another layout such as
    a newer release's) is never passed over in silence when it is the one
    asked for: named by its id or a start of it, the newest of the folder
    when `latest` is asked for, or the only records there are. Then
    `RecordUnreadable` names the file and why; `runs list` shows the others
    with a warning for it.
    """
    records, unreadable = _read_all(run_out_dir)
    if not unreadable:
        return records
    if runs_dir(run_out_dir) in unreadable:
        # another user's private `_runs/`: the one line for a path this user may not
        # enter (exit 1), not "no run records", which it is not known to lack
        record_files(run_out_dir)
    if run_id == "latest":
        # run ids start with the start time to the second; within one second the
        # order is unknown, so an unreadable record of the newest second may be newer
        newest = records[-1].run_id.split("_")[0] if records else ""
        meant = (
            [path for path in unreadable if path.stem.split("_")[0] >= newest] if records else []
        )
        hint = "; name an older run by its id" if records else ""
    else:
        if any(record.run_id.startswith(run_id) for record in records):
            return records
        meant = [path for path in unreadable if path.stem == run_id] or [
            path for path in unreadable if path.stem.startswith(run_id)
        ]
        meant = meant if len(meant) == 1 else []
        hint = ""
    if not meant and not records:
        meant = sorted(unreadable, key=lambda path: path.stem)
        more = len(meant) - 1
        hint = f" (and {more} more record(s) that cannot be read)" if more else ""
    if meant:
        path = meant[-1]
        raise RecordUnreadable(
            f"the run record {str(path)!r} cannot be read: {unreadable[path]}{hint}"
        )
    return records


def find_record(run_out_dir: Path, run_id: str) -> RunRecord:
    """A run by id, by a unique prefix of its id, or the newest with `latest`.

    Unknown ids list what exists; a batch's --out, which keeps records per
    session, says so and names a session to look in. A record that cannot be
    read is named with why, when it is the one asked for (`records_for`). A
    whole id is the record's file name, so that record alone is read.
    """
    named = _named_record(run_out_dir, run_id)
    if named is not None:
        return named
    return full_record(choose_run(_some_records(run_out_dir, run_id), run_out_dir, run_id))


def find_kept_run(
    run_out_dir: Path, run_id: str, *, why: str, command: str = "runs show"
) -> RunRecord:
    """A run as `find_record` finds it, but `latest` is the newest *succeeded* run.

    What `verify`, `rerun` and `runs export` mean by `latest`: the run whose
    outputs the folder holds, since only a succeeded run's are kept. A failed
    or dry run after it must not take its place (`runs export latest` made a
    crate of a failed run, without outputs, while `rerun latest` repeated the
    run before it). A run named by its id is that run, whatever its status.
    With no succeeded run, RecordNotFound names the latest run's status (as
    `runs list` shows it), followed by `why` (what the command needs a
    succeeded run for). On a batch's --out, which keeps its records per session,
    the error names `command` (the one the user typed, such as `rerun`) on a
    session folder.
    """
    named = _named_record(run_out_dir, run_id)
    if named is not None:
        return named
    records = _some_records(run_out_dir, run_id, command)
    return full_record(choose_run(records, run_out_dir, run_id, kept_why=why))


def _some_records(run_out_dir: Path, run_id: str, command: str = "runs show") -> list[RunHeader]:
    """`records_for`, where no record at all is an error that says where to look: for
    a batch's --out, the same `command` on one of its session folders (`rerun` was
    told to use `runs show` there, which repeats nothing)."""
    records = records_for(run_out_dir, run_id)
    if records:
        return records
    if not run_out_dir.is_dir():  # a mistyped OUT: "no run records in 'x/_runs'" hid that
        raise RecordNotFound(
            f"{str(run_out_dir)!r} is not a folder; give the --out of a run or a batch"
        )
    sessions = session_folders(run_out_dir)
    if sessions:
        raise RecordNotFound(
            f"{str(run_out_dir)!r} is a batch output: its run records are per session, "
            f"e.g. `mdivicom {command} {sessions[0]} {run_id}` (or `mdivicom runs list "
            f"{run_out_dir}` for every session)"
        )
    raise no_records(run_out_dir)


def no_records(run_out_dir: Path) -> RecordNotFound:
    """`no run records in 'OUT/_runs'`, or, for a folder in a run root (`results/writer`,
    the plugin's output, given where its --out `results` belongs), the folder meant."""
    parent = run_out_dir.parent
    if run_out_dir.name and (parent / RUNS_DIR).is_dir():
        return RecordNotFound(
            f"no run records in {str(run_out_dir / RUNS_DIR)!r}: {str(run_out_dir)!r} is in "
            f"the run root {str(parent)!r} (a plugin's output?); give {str(parent)!r}, the "
            "--out of its runs"
        )
    return RecordNotFound(f"no run records in {str(run_out_dir / RUNS_DIR)!r}")


def choose_run(
    records: list[RunHeader], run_out_dir: Path, run_id: str, *, kept_why: str | None = None
) -> RunHeader:
    """The run `run_id` means among `records` (oldest first, not empty): that id, the
    one run whose id starts so, or with `latest` the newest run; the newest
    *succeeded* run when `kept_why` is given (see `find_kept_run`, whose `why` it is).
    Choosing among headers already read lets a command that needs them all anyway
    (`verify`) read the folder once."""
    if run_id == "latest":
        if kept_why is None:
            return records[-1]
        done = [record for record in records if record.status == "succeeded"]
        if done:
            return done[-1]
        newest = records[-1]
        raise RecordNotFound(
            f"no succeeded run recorded in {str(run_out_dir)!r} (its latest run "
            f"{newest.run_id} {status_words(shown_status(newest, run_out_dir))}); {kept_why}"
        )
    exact = [record for record in records if record.run_id == run_id]
    matches = exact or [record for record in records if record.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(record.run_id for record in matches[:5])
        raise RecordNotFound(
            f"{run_id!r} is the start of several run ids ({shown}); give more of it"
        )
    recent = ", ".join(r.run_id for r in records[-3:])
    log = _log_only(run_out_dir, run_id)
    if log is not None:
        raise RecordNotFound(
            f"run {log.stem} under {str(run_out_dir)!r} left only its log {str(log)!r}: it "
            "ended before its record was written (a run of a release from before `running` "
            "records, killed; or its record was removed); read the log; `mdivicom runs "
            f"clean {run_out_dir}` removes its staging folder if one is left. The newest "
            f"runs: {recent}"
        )
    raise RecordNotFound(
        f"no run {run_id!r} in {str(run_out_dir)!r}; the newest are: {recent} (or use 'latest')"
    )


def _log_only(run_out_dir: Path, run_id: str) -> Path | None:
    """The log `_runs/<id>.log` of the one run `run_id` (an id or a start of one) names
    that has no record: `runs show` of such a run said `no run` while its log lay
    beside the records. Runs of releases before `running` records wrote the record
    only at the end, so one killed left its log, its staging and nothing else."""
    if not run_id or run_id == "latest" or run_id.startswith("."):
        return None
    try:
        names = os.listdir(runs_dir(run_out_dir))
    except OSError:
        return None
    logs = [
        name
        for name in names
        if name.endswith(".log")
        and name.startswith(run_id)
        and name.removesuffix(".log") + ".json" not in names
    ]
    return runs_dir(run_out_dir) / logs[0] if len(logs) == 1 else None


def _named_record(run_out_dir: Path, run_id: str) -> RunRecord | None:
    """The record whose file is `_runs/<run_id>.json`, when it is that run's; None when
    there is no such file (a start of an id, `latest`) or it holds another run.

    Reading only that file keeps `runs show` and `verify` of one run as fast in a
    folder of thousands of runs as in a new one. A file there that cannot be read
    is the record asked for: `RecordUnreadable`, as `records_for` says.
    """
    if run_id in ("", "latest") or run_id.startswith(".") or os.sep in run_id or "\0" in run_id:
        return None
    path = runs_dir(run_out_dir) / f"{run_id}.json"
    try:
        record = read_record(path)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError) as exc:
        if not path.is_file():  # a folder of that name, or one this user may not enter
            return None
        raise RecordUnreadable(
            f"the run record {str(path)!r} cannot be read: {os_reason(exc, path)}"
        ) from None
    return record if record.run_id == run_id else None


class RunListItem(msgspec.Struct, kw_only=True, frozen=True):
    """One line of `runs list` over a single run root."""

    run_id: str
    status: str
    plugin: str
    version: str
    started_at: str
    duration_s: float
    exit_code: int | None
    error: ErrorInfo | None
    record: str

    @classmethod
    def of(cls, record: RunHeader, run_out_dir: Path) -> RunListItem:
        return cls(
            run_id=record.run_id,
            status=shown_status(record, run_out_dir),
            plugin=record.plugin.ref,
            version=record.plugin.version,
            started_at=record.started_at,
            duration_s=record.duration_s,
            exit_code=record.exit_code,
            error=record.error,
            record=str(runs_dir(run_out_dir) / f"{record.run_id}.json"),
        )


class RunRow(msgspec.Struct, kw_only=True, frozen=True):
    """One line of `runs list` over a batch: a session's latest run of one plugin.

    `session` is None for the runs recorded in the folder itself, when the
    batch's --out is also a run root of its own (see `run_roots`).
    """

    session: str | None
    plugin: str
    status: str
    run_id: str
    started_at: str
    runs: int
    error: str | None


def _holds_runs(folder: Path) -> bool:
    """Whether `folder` is a run root (has `_runs/`); False for one this user may not
    enter, such as another user's output made private by a umask of 077 in a
    shared --out: asking it made `runs list`, `verify` and `runs clean` stop
    with an internal error over a folder that is none of their business."""
    try:
        return folder.is_dir() and (folder / RUNS_DIR).is_dir()
    except OSError:
        return False


def session_folders(out: Path) -> list[Path]:
    """Sub-folders of a batch's --out that are run roots of their own (have _runs/)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if _holds_runs(p))


class RunRoot(msgspec.Struct, kw_only=True, frozen=True):
    """A folder holding `_runs/`: `out` itself (`session` None) or one batch session."""

    session: str | None
    folder: Path


def run_roots(out: Path) -> list[RunRoot]:
    """Every run root `out` holds: itself when it has `_runs/`, then each batch session.

    One --out is often both: a plugin run over the whole study, then a batch
    chained onto its output (`--dataset results/make/dataset --sessions 'ses-*'
    --out results`). Treating such a folder as only one of the two made
    `verify` and `runs export` pass over every session while `runs list`
    showed only the sessions. A folder that is the output of one of the
    folder's own runs (`<out>/<id>/`) is that plugin's output, not a session,
    even when the plugin wrote a `_runs/` into it.
    """
    roots: list[RunRoot] = []
    sessions = session_folders(out)
    outputs: set[str] = set()
    if (out / RUNS_DIR).is_dir():
        roots.append(RunRoot(session=None, folder=out))
        if sessions:  # a plain run root's records are read once, by the command itself
            outputs = {record.plugin.id for record in load_records(out)[0]}
    roots.extend(
        RunRoot(session=folder.name, folder=folder)
        for folder in sessions
        if folder.name not in outputs
    )
    return roots


def latest_by_session(out: Path) -> tuple[list[RunRow], list[str]]:
    """Per run root and plugin: the latest run's status, its id and how many runs there were."""
    rows: list[RunRow] = []
    problems: list[str] = []
    for root in run_roots(out):
        records, found_problems = load_records(root.folder)
        problems.extend(found_problems)
        by_plugin: dict[str, list[RunHeader]] = {}
        for record in records:
            by_plugin.setdefault(record.plugin.ref, []).append(record)
        for plugin, runs in sorted(by_plugin.items()):
            latest = runs[-1]
            rows.append(
                RunRow(
                    session=root.session,
                    plugin=plugin,
                    status=shown_status(latest, root.folder),
                    run_id=latest.run_id,
                    started_at=latest.started_at,
                    runs=len(runs),
                    error=f"{latest.error.type}: {latest.error.message}" if latest.error else None,
                )
            )
    return rows, problems
