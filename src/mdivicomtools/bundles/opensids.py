"""`mdivicom dataset check`: does a folder follow the openSIDS v0.1 layout?

openSIDS is a draft ("illustrative, not yet strict"), so the checker separates
errors (what breaks tools: a missing manifest, files that do not parse, an
events table without its pivot columns) from warnings (what the layout
recommends: session and stream sidecars, names, timebase maps). Every finding
names the file and, for text formats, the line; a malformed file is a finding,
never a crash.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from mdivicomtools.common.safefs import display_name
from mdivicomtools.common.text import printable
from mdivicomtools.errors import UsageError

MANIFEST = "dataset_manifest.yaml"
SESSION_RE = re.compile(r"^ses-[A-Za-z0-9]+$")
STREAM_RE = re.compile(r"^str-[A-Za-z0-9._-]+$")
STREAM_TYPES = ("video", "audio", "gaze", "imu")
EVENT_COLUMNS = ("onset", "duration", "tier", "label")
TIMEBASE_SUFFIX = "_timebase_map.json"
#: BIDS writes a missing value as `n/a`, and allows it for an event's duration (an
#: event without a meaningful one); an onset is always a number
NOT_AVAILABLE = "n/a"
#: a decimal number as TSV tools write one (`1.5`, `-0.25`, `.5`, `2e-3`); float()
#: also takes nan, inf, `1_0` and surrounding blanks, which no reader of BIDS-like
#: tables reads as seconds
DECIMAL_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Finding(msgspec.Struct, kw_only=True, frozen=True):
    severity: Literal["error", "warning"]
    path: str
    message: str
    line: int | None = None

    def describe(self) -> str:
        """One line: names from disk may hold a newline, which would forge a finding."""
        where = f"{self.path}:{self.line}" if self.line else self.path
        return printable(f"{self.severity}: {where}: {self.message}")


class DatasetReport(msgspec.Struct, kw_only=True):
    root: str
    sessions: int
    streams: int
    findings: list[Finding]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    def lines(self, per_path: int) -> Iterator[str]:
        """The findings as lines, at most `per_path` for each path, then one that counts
        the rest: a table wrong in every row must not bury the other files' findings."""
        total = Counter(f.path for f in self.findings)
        shown: Counter[str] = Counter()
        for finding in self.findings:
            shown[finding.path] += 1
            if shown[finding.path] <= per_path:
                yield finding.describe()
            elif shown[finding.path] == per_path + 1:
                yield printable(
                    f"note: {finding.path}: {total[finding.path] - per_path} more finding(s) "
                    "not shown; --json lists every one"
                )


class _Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.findings: list[Finding] = []
        self.sessions = 0
        self.streams = 0
        #: paths that could not be looked at or listed: each is reported once, however
        #: many parts of the check reach it
        self.unreadable: set[Path] = set()

    def add(
        self,
        severity: Literal["error", "warning"],
        path: Path,
        message: str,
        line: int | None = None,
    ) -> None:
        relative = path.relative_to(self.root).as_posix() if path != self.root else "."
        # names that are not UTF-8 reach paths and messages; escaped, JSON can hold them
        self.findings.append(
            Finding(
                severity=severity,
                path=display_name(relative)[0],
                message=display_name(message)[0],
                line=line,
            )
        )

    # -- the file system: what cannot be read is a finding, not a crash ----------------

    def kind(
        self, path: Path
    ) -> Literal["folder", "file", "broken link", "other", "unreadable"] | None:
        """What `path` is (following links), None when it does not exist; "unreadable"
        (with its finding) when it cannot be looked at: a name too long, a folder above
        it that cannot be searched."""
        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            return "broken link" if path.is_symlink() else None
        except OSError as exc:
            self.cannot(path, _unreachable(exc))
            return "unreadable"
        if stat.S_ISDIR(mode):
            return "folder"
        return "file" if stat.S_ISREG(mode) else "other"

    def entries(self, folder: Path) -> list[Path]:
        """The entries of `folder`, sorted; none (and an error) when it cannot be listed:
        what it holds is unchecked, and `mdivicom run` refuses such a dataset."""
        try:
            return sorted(folder.iterdir())
        except OSError as exc:
            self.cannot(
                folder,
                f"cannot be listed ({_reason(exc)}), so nothing in it was checked; "
                "give the user running the check read access to it",
            )
            return []

    def cannot(self, path: Path, message: str) -> None:
        if path not in self.unreadable:
            self.unreadable.add(path)
            self.add("error", path, message)

    def folders(self, folder: Path) -> list[Path]:
        return [p for p in self.entries(folder) if self.kind(p) == "folder"]

    def walk(self, folder: Path, name: str, skip: frozenset[str] = frozenset()) -> Iterator[Path]:
        """Every file called `name` under `folder` but in its sub-folders named in
        `skip`, links not followed (a link loop must not hang the check); folders
        that cannot be listed become findings."""
        for entry in self.entries(folder):
            if entry.name in skip:
                continue
            try:
                mode = entry.lstat().st_mode
            except OSError as exc:  # a folder readable but not searchable (r--)
                self.cannot(entry, _unreachable(exc))
                continue
            if stat.S_ISDIR(mode):
                if entry.name == name:
                    self.add("error", entry, "is a folder, not a file")
                yield from self.walk(entry, name)
            elif entry.name == name:
                yield entry

    # -- file readers that turn malformed content into findings -------------------

    def text(self, path: Path) -> str | None:
        """The file as text, None (with one finding) when it cannot be read or is not
        UTF-8. A UTF-8 byte order mark, which spreadsheet programs write, is dropped:
        left in, it became part of the first column's name."""
        try:
            # O_NONBLOCK: a FIFO named like a table must not hang the check until
            # something writes to it; it is refused below, unread
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    kind = "folder" if stat.S_ISDIR(mode) else "other"
                    self.add("error", path, f"is {_a(kind)}, not a file")
                    return None
                data = handle.read()
        except OSError as exc:
            self.add(
                "error",
                path,
                f"cannot be read ({_reason(exc)}); "
                "give the user running the check read access to it",
            )
            return None
        data = data.removeprefix(codecs.BOM_UTF8)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.add(
                "error",
                path,
                f"not UTF-8 text: byte 0x{data[exc.start]:02x} is not UTF-8 "
                "(a file saved as Latin-1 or Windows-1252?); save it as UTF-8",
                line=data.count(b"\n", 0, exc.start) + 1,
            )
            return None

    def yaml_mapping(self, path: Path) -> dict[str, Any] | None:
        import yaml  # 40 ms: paid only when a dataset has a manifest to read

        text = self.text(path)
        if text is None:
            return None
        try:
            data = yaml.load(text, Loader=_unique_keys_loader())  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.add(
                "error",
                path,
                f"not valid YAML: {problem}",
                line=mark.line + 1 if mark is not None else None,
            )
            return None
        if data is None:
            self.add("error", path, "empty; expected a mapping of keys to values (key: value)")
            return None
        if not isinstance(data, dict):
            self.add(
                "error",
                path,
                f"expected a mapping of keys to values, got {type(data).__name__}",
                line=1,
            )
            return None
        return data

    def json_value(self, path: Path) -> Any:
        text = self.text(path)
        if text is None:
            return None
        try:
            return json.loads(text, parse_constant=_not_json)
        except json.JSONDecodeError as exc:
            self.add(
                "error", path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno
            )
        except _NotJson as exc:
            self.add("error", path, f"not valid JSON: {exc} is not a JSON number; use null")
        return None

    def tsv_rows(self, path: Path) -> list[tuple[int, list[str]]] | None:
        """(line number, cells) of a TSV's rows, header first; ragged rows become
        findings. None (with its finding) when the file cannot be read."""
        text = self.text(path)
        if text is None:
            return None
        rows: list[tuple[int, list[str]]] = []
        width = None
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
        number = 1  # the line a row starts on: a quoted cell may run over several
        try:
            for row in reader:
                last = reader.line_num
                if last > number and any("\n" in cell or "\r" in cell for cell in row):
                    # a '"' opens a quoted cell (BIDS quotes cells holding tabs); one left
                    # open swallowed every later line into a single cell, unchecked
                    self.add(
                        "error",
                        path,
                        f"a quoted cell starting on this line runs to line {last}: "
                        "a '\"' without its closing '\"'? close it on this line, or "
                        "write the cell without quotes",
                        line=number,
                    )
                    number = last + 1
                    continue
                row_line, number = number, last + 1
                if not row:
                    continue
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    self.add(
                        "error",
                        path,
                        f"has {len(row)} column(s) where the header has {width}",
                        line=row_line,
                    )
                    continue
                rows.append((row_line, row))
        except csv.Error as exc:
            self.add("error", path, f"not a readable TSV table: {exc}")
        return rows

    # -- the layout ------------------------------------------------------------------

    def run(self) -> None:
        manifest = self.root / MANIFEST
        manifest_kind = self.kind(manifest)
        if manifest_kind == "file":
            self.yaml_mapping(manifest)
        elif manifest_kind is None:
            self.add(
                "error",
                self.root,
                f"{MANIFEST} is missing; an openSIDS dataset starts "
                "with one (name, version, description)",
            )
        elif manifest_kind != "unreadable":
            self.add("error", manifest, f"is {_a(manifest_kind)}, not a YAML file")
        sessions = self.root / "sessions"
        sessions_kind = self.kind(sessions)
        if sessions_kind is None:
            name = self.root.resolve().name
            if SESSION_RE.match(name) or name == "sessions":
                what = (
                    "the sessions/ folder itself" if name == "sessions" else f"one session ({name})"
                )
                self.add(
                    "error",
                    self.root,
                    f"sessions/ is missing: DIR is {what}; check the dataset's root folder, "
                    "the one that holds sessions/ and the manifest",
                )
            else:
                self.add(
                    "error",
                    self.root,
                    "sessions/ is missing; recordings go in sessions/ses-<id>/",
                )
            return
        if sessions_kind == "unreadable":
            return
        if sessions_kind != "folder":
            self.add(
                "error",
                sessions,
                f"is {_a(sessions_kind)}, not a folder; recordings go in sessions/ses-<id>/",
            )
            return
        for entry in self.entries(sessions):
            entry_kind = self.kind(entry)
            if entry_kind == "broken link":
                self.add(
                    "warning",
                    entry,
                    f"a symbolic link to {os.readlink(entry)}, which does not exist",
                )
            elif entry_kind == "unreadable":
                continue
            elif entry_kind != "folder":
                self.add(
                    "warning",
                    entry,
                    "a file directly in sessions/; expected only ses-<id>/ folders",
                )
            elif not SESSION_RE.match(entry.name):
                self.add(
                    "warning", entry, "session folders are named ses-<id> (letters and digits)"
                )
            else:
                self.session(entry)

    def session(self, folder: Path) -> None:
        self.sessions += 1
        sidecar = folder / f"{folder.name}_session.yaml"
        self.sidecar(sidecar, folder, f"{sidecar.name} is missing (the session's metadata)")
        streams: set[str] | None = set()
        raw = folder / "raw"
        raw_kind = self.kind(raw)
        if raw_kind == "folder":
            unreadable = len(self.unreadable)
            streams = self.raw(raw)
            if len(self.unreadable) > unreadable:
                streams = None  # not every stream is known: no map can be called stray
        elif raw_kind != "unreadable":
            self.add("warning", folder, "no raw/ folder: the session has no recorded streams")
        self.sync(folder / "derived" / "sync", streams)
        # raw/ is the devices' own: a recorder's events.tsv there is not the pivot
        for events in self.walk(folder, "events.tsv", skip=frozenset({"raw"})):
            self.events(events)

    def raw(self, raw: Path) -> set[str]:
        streams: set[str] = set()
        #: stream id, case-folded -> its folder: a timebase map is named by the id
        #: alone, and a file system that ignores case (macOS, Windows) merges ids
        #: that differ only in case
        seen: dict[str, Path] = {}
        for type_folder in self.folders(raw):
            if type_folder.name not in STREAM_TYPES:
                self.add(
                    "warning",
                    type_folder,
                    f"unknown stream type; openSIDS names {', '.join(STREAM_TYPES)}",
                )
            for stream in self.folders(type_folder):
                if not STREAM_RE.match(stream.name):
                    self.add("warning", stream, "stream folders are named str-<id>")
                    continue
                self.streams += 1
                streams.add(stream.name)
                other = seen.setdefault(stream.name.casefold(), stream)
                if other is not stream:
                    self.add(
                        "error",
                        stream,
                        f"the same stream id as {other.relative_to(raw.parent).as_posix()}; "
                        "a stream id names one stream of a session (its timebase map is "
                        "<stream_id>_timebase_map.json, whatever the type), also when only "
                        "its case differs: rename one",
                    )
                sidecar = stream / f"{stream.name}_stream.yaml"
                self.sidecar(
                    sidecar,
                    stream,
                    f"{sidecar.name} is missing; a stream declares its native timebase there",
                )
        return streams

    def sidecar(self, sidecar: Path, folder: Path, missing: str) -> None:
        """Check a session's or stream's YAML sidecar; without one, warn on `folder`."""
        sidecar_kind = self.kind(sidecar)
        if sidecar_kind == "file":
            self.yaml_mapping(sidecar)
        elif sidecar_kind is None:
            self.add("warning", folder, missing)
        elif sidecar_kind != "unreadable":
            self.add("error", sidecar, f"is {_a(sidecar_kind)}, not a YAML file")

    def sync(self, sync: Path, streams: set[str] | None) -> None:
        """Timebase maps against the session's streams (None: the streams are not all
        known, as raw/ could not be read completely; then maps are only parsed)."""
        if self.kind(sync) != "folder":
            return
        mapped: set[str] = set()
        maps = sync / "timebase_maps"
        if self.kind(maps) == "folder":
            for path in self.entries(maps):
                if not path.name.endswith(TIMEBASE_SUFFIX):
                    self.add(
                        "warning", path, f"timebase maps are named <stream_id>{TIMEBASE_SUFFIX}"
                    )
                    continue
                stream_id = path.name[: -len(TIMEBASE_SUFFIX)]
                mapped.add(stream_id)
                if streams is not None and stream_id not in streams:
                    self.add("warning", path, f"no raw stream {stream_id} in this session")
                value = self.json_value(path)
                if value is not None and not isinstance(value, dict):
                    self.add("error", path, "a timebase map is a JSON object", line=1)
        for stream_id in sorted((streams or set()) - mapped):
            self.add(
                "warning",
                sync,
                f"stream {stream_id} has no "
                f"timebase_maps/{stream_id}{TIMEBASE_SUFFIX}; aligned streams need one",
            )
        markers = sync / "sync_markers.tsv"
        if self.kind(markers) == "file":
            self.tsv_rows(markers)

    def events(self, path: Path) -> None:
        table = self.tsv_rows(path)
        if table is None:
            return
        rows = iter(table)
        first = next(rows, None)
        if first is None:
            self.add(
                "error",
                path,
                "empty; the annotation pivot needs a header with " + ", ".join(EVENT_COLUMNS),
            )
            return
        header = first[1]
        missing = [c for c in EVENT_COLUMNS if c not in header]
        if missing:
            self.add(
                "error",
                path,
                "missing pivot column(s) "
                + ", ".join(missing)
                + " (onset and duration in session seconds, tier, label)"
                + _header_hint(header, missing),
                line=first[0],
            )
            return
        repeated = [c for c in EVENT_COLUMNS if header.count(c) > 1]
        if repeated:
            self.add(
                "error",
                path,
                f"pivot column(s) {', '.join(repeated)} appear more than once in the header, "
                "so which one a tool reads is a guess; keep one of each",
                line=first[0],
            )
            return
        onset, duration = header.index("onset"), header.index("duration")
        for number, row in rows:
            for name, index in (("onset", onset), ("duration", duration)):
                if name == "duration" and row[index] == NOT_AVAILABLE:
                    continue
                value = seconds(row[index])
                if value is None:
                    self.add(
                        "error",
                        path,
                        f"{name} {row[index]!r} is not a number of seconds",
                        line=number,
                    )
                    continue
                if name == "duration" and value < 0:
                    self.add("error", path, f"duration {value:g} is negative", line=number)


class _NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, no other JSON reader does."""


def _not_json(constant: str) -> Any:
    raise _NotJson(constant)


_UNIQUE_KEYS_LOADER: list[Any] = []


def _unique_keys_loader() -> Any:
    """A yaml SafeLoader that refuses a key given twice in one mapping.

    PyYAML keeps the last of two equal keys without a word, so a sidecar that
    says `rate_hz: 48000` and, further down, `rate_hz: 44100` passed the check
    with the second. Built on first use: yaml is imported only for datasets
    that have YAML to read.
    """
    if _UNIQUE_KEYS_LOADER:
        return _UNIQUE_KEYS_LOADER[0]
    import yaml

    class UniqueKeysLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        problem=f"key {key!r} is given twice (first at line {seen[key]})",
                        problem_mark=key_node.start_mark,
                    )
                if isinstance(key, (str, int, float, bool)):
                    seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    _UNIQUE_KEYS_LOADER.append(UniqueKeysLoader)
    return UniqueKeysLoader


def _header_hint(header: list[str], missing: list[str]) -> str:
    """What the header has instead of the pivot columns, when that is a near miss."""
    if len(header) == 1 and any(sep in header[0] for sep in ",;"):
        return "; the header is a single cell: separate the columns with tabs, not , or ;"
    near = [h for h in header if h.strip().lower() in missing]
    if near:
        return (
            "; the header has "
            + ", ".join(repr(h) for h in near)
            + ": column names are lowercase, without blanks"
        )
    return ""


def _reason(exc: OSError) -> str:
    """`Permission denied`: the finding already names the path that errno's text repeats."""
    return exc.strerror or str(exc)


def _unreachable(exc: OSError) -> str:
    """Why a path cannot be looked at, and what to do about it."""
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot be looked at ({_reason(exc)}); shorten the names on its path"
    return (
        f"cannot be looked at ({_reason(exc)}); "
        "give the user running the check access to the folders above it"
    )


def _a(kind: str) -> str:
    if kind == "other":
        return "a special file (a FIFO, socket or device)"
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def seconds(text: str) -> float | None:
    """`text` as a finite number of seconds, None when it is not a decimal number.

    `1e999` is written as a decimal number but is no finite one: refused too.
    """
    if DECIMAL_RE.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def check_dataset(root: str | Path) -> DatasetReport:
    """Check `root` against the openSIDS v0.1 layout; raises UsageError if it is no folder."""
    folder = Path(root)
    if not folder.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder; give the dataset's root folder")
    checker = _Checker(folder)
    checker.run()
    return DatasetReport(
        root=display_name(str(folder))[0],
        sessions=checker.sessions,
        streams=checker.streams,
        findings=checker.findings,
    )
