"""Result bundles: the typed `resultbundle.json` sidecars plugins hand to each other.

The openSIDS draft fixes the fields; this module makes them concrete: msgspec
Structs (the source of the published JSON Schema), a validator that reports
every problem at once with the sidecar, a JSON pointer and what was expected,
and a writer for plugin authors. Validation is deliberately v0.1-minimal:
the envelope, required files present, and join/time key columns present in the
headers of tabular files. Unknown fields and extra columns are always allowed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from mdivicomtools.common.durable import write_atomic
from mdivicomtools.common.jsonio import pretty
from mdivicomtools.common.safefs import (
    UnsafeFile,
    disk_name,
    display_name,
    inside,
    open_regular,
    path_problem,
    read_regular,
)
from mdivicomtools.common.schema import struct_schema
from mdivicomtools.common.text import os_reason, schema_text
from mdivicomtools.common.timefmt import iso, utc_now

if TYPE_CHECKING:
    from mdivicomtools.model.run import RunRequest

SIDECAR_NAME = "resultbundle.json"
TABULAR_SUFFIXES = {".tsv": "\t", ".csv": ","}
#: extension -> `format`, for the writer (longest suffix wins)
FORMATS = {
    ".tsv.gz": "tsv.gz",
    ".csv.gz": "csv.gz",
    ".tsv": "tsv",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".txt": "txt",
    ".npy": "npy",
    ".npz": "npz",
    ".wav": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".mp4": "mp4",
    ".mkv": "mkv",
    ".avi": "avi",
    ".mov": "mov",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".csv.zip": "csv.zip",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".edf": "edf",
    ".xdf": "xdf",
}


# --- the model ------------------------------------------------------------------


class TimeReference(msgspec.Struct, kw_only=True, omit_defaults=True):
    """How times in the bundle relate to the session: at least `kind` and `unit`."""

    kind: str
    unit: str


#: the time_reference of a bundle whose files have no time column
NO_TIME_AXIS = TimeReference(kind="none", unit="none")


class FileTime(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Time columns of a table: `point` (`key`) or `interval` (`start_key`, `end_key`)."""

    kind: Literal["point", "interval"]
    key: str | None = None
    start_key: str | None = None
    end_key: str | None = None
    unit: str | None = None


class BundleFile(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One file of the payload; `path` is relative to the payload root."""

    path: str
    role: str
    format: str
    required: bool
    key_columns: dict[str, str] | None = None
    time: FileTime | None = None
    description: str | None = None


class Producer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Who wrote the sidecar."""

    tool_ref: str
    tool_version: str
    git_sha: str | None = None
    pipeline_run_id: str | None = None


class UpstreamTool(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The vendor tool or exporter that made the payload, if not the producer."""

    name: str
    version: str | None = None


#: what `source.root_base` may be, as the published schema says it
ROOT_BASE_EXPECTED = '"sidecar" or an absolute folder'
#: a relative root_base would be resolved against the current directory, so that
#: the verdict on one sidecar depended on where the validator was started
ROOT_BASE_PATTERN = "^(sidecar|/.*)$"
#: SemVer-like: a consumer compares the major number to know whether it can read the
#: bundle, so the version must start with one (`1`, `1.2`, `1.0.0`, `2.0.0-rc.1`)
SCHEMA_VERSION_EXPECTED = "a SemVer-like version such as 1.0.0"
SCHEMA_VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){0,2}([-+][0-9A-Za-z.+-]+)?$"


class Source(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a detached sidecar's payload is: `root`, relative to `root_base`.

    `root_base` is "sidecar" (the folder holding the sidecar; the default) or an
    absolute folder; `root` may itself be absolute.
    """

    root: str
    root_base: Annotated[
        str, msgspec.Meta(pattern=ROOT_BASE_PATTERN, description=ROOT_BASE_EXPECTED)
    ] = "sidecar"


class ResultBundle(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A `resultbundle.json` sidecar (openSIDS v0.1 result bundles)."""

    resultbundle_type: str
    schema_version: Annotated[
        str, msgspec.Meta(pattern=SCHEMA_VERSION_PATTERN, description=SCHEMA_VERSION_EXPECTED)
    ]
    time_reference: TimeReference
    files: list[BundleFile]
    created_at: str | None = None
    producer: Producer | None = None
    upstream_tool: UpstreamTool | None = None
    source: Source | None = None


# --- validation -------------------------------------------------------------------


class Problem(msgspec.Struct, kw_only=True, frozen=True):
    pointer: str
    message: str
    expected: str | None = None

    def describe(self, sidecar: str) -> str:
        text = f"{sidecar}: {self.pointer or '/'}: {self.message}"
        return f"{text} (expected {self.expected})" if self.expected else text


class BundleReport(msgspec.Struct, kw_only=True):
    """The outcome of validating one sidecar."""

    path: str
    valid: bool
    resultbundle_type: str | None = None
    schema_version: str | None = None
    problems: list[Problem] = []
    notes: list[str] = []

    def messages(self) -> list[str]:
        return [problem.describe(self.path) for problem in self.problems]


def _pointer(parts: Iterable[Any]) -> str:
    """A JSON pointer (RFC 6901): every reference token escaped, `~` as `~0`, `/` as `~1`.

    Every pointer a problem carries is built here: a key such as `a/b~c` spelt
    into a pointer unescaped points at another place (`/a/b~c`).
    """
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _KeyedTwice(dict[str, Any]):
    """A JSON object that gave a key more than once; `twice` names those keys.

    Python's json keeps the last value of a repeated key, other readers the first
    or an error: one sidecar would hand two consumers two different bundles.
    """

    twice: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for sidecars: a plain dict, or a `_KeyedTwice` naming repeats."""
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    keyed = _KeyedTwice(value)
    keyed.twice = []
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen and key not in keyed.twice:
            keyed.twice.append(key)
        seen.add(key)
    return keyed


def parse_sidecar(raw: bytes) -> Any:
    """A sidecar's JSON, with repeated keys kept visible to `json_problems`.

    Python's json also reads NaN, Infinity and numbers too large for a float
    (as inf), which are not JSON: `json_problems` reports what they became.
    A byte order mark at the start is skipped: a sidecar written by hand for a
    vendor export may carry an editor's.
    """
    return json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_object)


def json_problems(data: Any) -> list[Problem]:
    """What a strict JSON reader would refuse or read differently, with pointers.

    NaN, Infinity and 1e999 (read as inf) are no JSON number: another reader of
    the sidecar (a plugin in another language, `jq`) fails on it, while Python
    alone would have called the bundle valid. A key given twice in one object
    (kept visible by `parse_sidecar`) is read one way here and another elsewhere.
    """
    problems: list[Problem] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        parts, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            spelt = (
                "NaN"
                if math.isnan(value)
                else f"{'-' if value < 0 else ''}Infinity (or a number too large for a float, "
                "such as 1e999)"
            )
            problems.append(
                Problem(
                    pointer=_pointer(parts),
                    message=f"{spelt} is not a JSON number; other JSON readers refuse it",
                    expected="a finite number, or null",
                )
            )
        elif isinstance(value, dict):
            for key in getattr(value, "twice", ()):
                problems.append(
                    Problem(
                        pointer=_pointer((*parts, key)),
                        message=f"the key {key!r} is given more than once in one object; "
                        "JSON readers differ on which value they keep",
                        expected="each key once",
                    )
                )
            stack.extend(((*parts, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*parts, i), v) for i, v in reversed(list(enumerate(value))))
    return problems


_SCHEMA_VALIDATOR: Any = None


def _schema_problems(data: Any) -> list[Problem]:
    """Every envelope problem, from the JSON Schema generated from the Structs.

    msgspec decides valid/invalid fast (most sidecars are valid); only an invalid
    one pays for jsonschema, which lists all problems instead of the first.
    """
    try:
        msgspec.convert(data, ResultBundle)
    except msgspec.ValidationError:
        pass
    else:
        return []
    global _SCHEMA_VALIDATOR
    if _SCHEMA_VALIDATOR is None:
        import jsonschema  # 150 ms, only for a sidecar msgspec already found invalid

        schema = resultbundle_schema()
        _SCHEMA_VALIDATOR = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    errors = [leaf for error in _SCHEMA_VALIDATOR.iter_errors(data) for leaf in _leaves(error)]
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        expected = _expected(error)
        message = error.message
        if error.validator == "pattern" and expected:
            # the field's description says what the regex means; the regex says it to no one
            message = f"{error.instance!r} is not of the expected form"
        problems.append(
            Problem(pointer=_pointer(error.absolute_path), message=message, expected=expected)
        )
    return problems


def _leaves(error: Any) -> list[Any]:
    """An optional object's own errors instead of "not valid under any of the given schemas".

    An optional field is `anyOf [its schema, null]`; for a value that is not
    null, the errors of the one other branch name the field that is wrong
    (`/source/root_base`) where the anyOf error names only its parent.
    """
    if error.validator != "anyOf" or error.instance is None or not error.context:
        return [error]
    branches = {e.relative_schema_path[0] for e in error.context}
    inner = [
        e for e in error.context if not (e.validator == "type" and e.validator_value == "null")
    ]
    if len(branches) != 2 or len({e.relative_schema_path[0] for e in inner}) != 1:
        return [error]
    return [leaf for e in inner for leaf in _leaves(e)]


def _expected(error: Any) -> str | None:
    validator = error.validator
    if validator == "type":
        return f"type {error.validator_value}"
    if validator == "required":
        return "the required fields " + ", ".join(error.validator_value)
    if validator == "enum":
        return "one of " + ", ".join(json.dumps(v) for v in error.validator_value)
    if validator == "pattern" and isinstance(error.schema.get("description"), str):
        return str(error.schema["description"])  # what the pattern means, said in words
    return None


#: the longest header line read from a table
HEADER_LIMIT = 1 << 20


def read_header(path: Path, delimiter: str) -> list[str] | None:
    """The header row of a (possibly gzipped) table, reading nothing past it.

    Only a regular file is opened (never through a symlink, never a FIFO), and
    at most HEADER_LIMIT characters are read, so a hostile table cannot hang
    or exhaust the validator.
    """
    with open_regular(path) as raw:
        binary: Any = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
        # utf-8-sig: a spreadsheet's byte order mark is not part of the first column
        handle = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        line = handle.readline(HEADER_LIMIT)
    if not line:
        return None
    return next(csv.reader(io.StringIO(line), delimiter=delimiter), [])


def _table_delimiter(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    for suffix, delimiter in TABULAR_SUFFIXES.items():
        if name.endswith(suffix):
            return delimiter
    return None


def _root_base(source: Any) -> Any:
    """`source.root_base` as written ("sidecar" when absent)."""
    return source.get("root_base", "sidecar") if isinstance(source, dict) else "sidecar"


def _bad_root_base(base: Any) -> bool:
    """Whether a root_base is neither "sidecar" nor an absolute folder."""
    return base != "sidecar" and not (isinstance(base, str) and Path(base).is_absolute())


def payload_root(sidecar: Path, source: Any) -> Path | None:
    """The folder that `files[].path` are relative to; None when `source` cannot say.

    A `root_base` that is neither "sidecar" nor an absolute folder names no
    folder: resolved against the current directory, the verdict would depend on
    where the check was started. Its files are then not looked for at all.
    """
    if not isinstance(source, dict) or not isinstance(source.get("root"), str):
        return sidecar.parent
    root = Path(disk_name(source["root"]))
    if root.is_absolute():
        return root
    base = _root_base(source)
    if _bad_root_base(base):
        return None
    return (sidecar.parent if base == "sidecar" else Path(disk_name(base))) / root


def _required_columns(entry: dict[str, Any]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(column, pointer) pairs that must be in the header, and time-spec problems."""
    columns: list[tuple[str, str]] = []
    problems: list[Problem] = []
    key_columns = entry.get("key_columns") or {}
    if isinstance(key_columns, dict):
        for key, column in key_columns.items():
            if isinstance(column, str):
                columns.append((column, _pointer(("key_columns", key))))
    time = entry.get("time")
    if isinstance(time, dict):
        kind = time.get("kind")
        # an odd kind (a list, say) is the schema's to report: a dict lookup would raise
        needed = (
            {"point": ("key",), "interval": ("start_key", "end_key")}.get(kind, ())
            if isinstance(kind, str)
            else ()
        )
        for name in needed:
            key = time.get(name)
            if key is not None and not isinstance(key, str):
                continue  # a key of the wrong type: the schema said so, once is enough
            if not key:
                problems.append(
                    Problem(
                        pointer=_pointer(("time", name)),
                        message=f"{'an' if kind == 'interval' else 'a'} {kind} time needs {name}",
                        expected=f"the name of the table's {name.replace('_', ' ')} column",
                    )
                )
                continue
            mapped = key_columns.get(key) if isinstance(key_columns, dict) else None
            columns.append((mapped if isinstance(mapped, str) else key, f"/time/{name}"))
    return columns, problems


class Readable(msgspec.Struct, kw_only=True, frozen=True):
    """The folders a check may read payload files in, and how a problem names them.

    A run's check reads only what the plugin itself could read: a container
    plugin must not make the runner read a host file (and copy its header line
    into the record) by pointing its payload root at it.
    """

    folders: tuple[Path, ...]
    #: "the output folder": completes "lies outside ..." in a problem
    named: str

    @classmethod
    def of(cls, confine: Path | Readable) -> Readable:
        """A plain folder (the form the finalisation passes) is the output folder."""
        return (
            confine
            if isinstance(confine, Readable)
            else cls(folders=(confine,), named="the output folder")
        )

    @classmethod
    def of_run(cls, request: RunRequest, staging_dir: Path) -> Readable:
        """What a run's plugin could read: its output, its dataset, its named mounts.

        The recommended detached sidecar (`<out_dir>/resultbundles/x/resultbundle.json`
        pointing at the dataset) then has the verdict `bundles validate` gives it.
        """
        mounts = request.container.mounts if request.container is not None else []
        return cls(
            folders=(staging_dir, request.dataset_dir, *(Path(m.source) for m in mounts)),
            named="the run's output folder, dataset and named mounts",
        )

    def admits(self, path: Path) -> bool:
        return any(inside(folder, path) for folder in self.folders)


class Placement(msgspec.Struct, kw_only=True, frozen=True):
    """Where a run's output is checked (`staged`) and where it will live (`final`).

    The finalisation checks sidecars in `<out>/_staging/<run_id>/<id>/`, but
    `bundles validate` and the next plugin see them in `<out>/<id>/`. A
    detached sidecar's relative `source.root` (`../other/dataset`) or an
    absolute one under `$MDIVICOM_FINAL_OUT_DIR` resolves differently from the
    two places, so the run judged a payload that is not the one its output
    will name. The run therefore resolves every path from the final place,
    and reads what lies under the final folder from staging, where it is now.
    """

    staged: Path
    final: Path

    def final_path(self, staged_path: Path) -> Path:
        """Where a path under the staging folder will be after promotion."""
        return self.final / staged_path.relative_to(self.staged)

    def on_disk(self, path: Path) -> Path:
        """A path as resolved from the final place, where its file is during the check.

        A path through the final folder is resolved by text: that folder does not
        exist yet (or holds the previous output), so the kernel cannot follow
        `<out>/<id>/../other` through it. Any other path is left to the kernel,
        as `bundles validate` leaves it.
        """
        try:
            path.relative_to(self.final)
        except ValueError:
            return path
        normal = Path(os.path.normpath(path))
        try:
            return self.staged / normal.relative_to(self.final)
        except ValueError:
            return normal  # it climbs out of the final folder: `../other/dataset`


def validate_data(
    data: Any,
    sidecar: Path,
    *,
    check_files: bool = True,
    confine: Path | Readable | None = None,
    placed: Placement | None = None,
) -> BundleReport:
    """Validate a sidecar's parsed JSON; never raises on odd input.

    With `confine`, files the sidecar names are read only if they lie inside
    one of its folders (symlinks resolved): a run's check never reads a host
    file a plugin pointed its payload root at. Such a file is a problem.
    With `placed`, the sidecar is judged from where it will live (see
    `Placement`), and problems name the payload root there.
    """
    problems = json_problems(data) + _schema_problems(data)
    notes: list[str] = []
    envelope = data if isinstance(data, dict) else {}
    files = envelope.get("files")
    source = envelope.get("source")
    root = payload_root(placed.final_path(sidecar) if placed else sidecar, source)
    base_pointer = _pointer(("source", "root_base"))
    base = _root_base(source)
    if _bad_root_base(base) and not any(p.pointer == base_pointer for p in problems):
        # what the schema's pattern lets through ("sidecar" and a newline, say)
        problems.append(
            Problem(
                pointer=base_pointer,
                message=f"{base!r} names no folder",
                expected=ROOT_BASE_EXPECTED,
            )
        )
    if root is None:
        notes.append("files not checked: source.root_base names no folder")
    elif check_files and isinstance(files, list):
        skipped_formats: set[str] = set()
        listed: dict[PurePosixPath, int] = {}
        for index, entry in enumerate(files):
            if isinstance(entry, dict):
                problems += _listed_once(entry, index, listed)
                problems += _check_file(
                    entry,
                    index,
                    root,
                    skipped_formats,
                    Readable.of(confine) if confine is not None else None,
                    placed,
                )
        if skipped_formats:
            notes.append(
                "column checks skipped for non-tabular format(s): "
                + ", ".join(sorted(skipped_formats))
            )
    rtype = envelope.get("resultbundle_type")
    version = envelope.get("schema_version")
    return BundleReport(
        path=str(sidecar),
        valid=not problems,
        resultbundle_type=rtype if isinstance(rtype, str) else None,
        schema_version=version if isinstance(version, str) else None,
        problems=problems,
        notes=notes,
    )


def _listed_once(
    entry: dict[str, Any], index: int, listed: dict[PurePosixPath, int]
) -> list[Problem]:
    """A problem when this entry's file was listed by an earlier entry already.

    Two entries for one file (`a.tsv` and `./a.tsv` too) may give it two roles,
    keys or `required`s: a consumer that finds its inputs by role or by path
    would take whichever entry it meets first.
    """
    path_value = entry.get("path")
    if not isinstance(path_value, str) or not path_value:
        return []
    name = PurePosixPath(path_value)
    first = listed.setdefault(name, index)
    if first == index:
        return []
    return [
        Problem(
            pointer=_pointer(("files", index, "path")),
            message=f"{path_value!r} is listed already, at {_pointer(('files', first))}",
            expected="each file listed once",
        )
    ]


def _check_file(
    entry: dict[str, Any],
    index: int,
    root: Path,
    skipped_formats: set[str],
    confine: Readable | None = None,
    placed: Placement | None = None,
) -> list[Problem]:
    base = _pointer(("files", index))
    path_value = entry.get("path")
    if not isinstance(path_value, str):
        return []  # the schema reported it
    if not path_value:
        # joined to the payload root it names the root itself: a folder that always
        # exists, so an entry naming no file at all was valid
        return [
            Problem(
                pointer=f"{base}/path",
                message="the path is empty; it names no file",
                expected="a path relative to the payload root",
            )
        ]
    relative = Path(disk_name(path_value))  # the sidecar's UTF-8 text, in this locale
    if path_problem(path_value) is not None:
        return [
            Problem(
                pointer=f"{base}/path",
                message=f"{path_value!r} leaves the payload root",
                expected="a path relative to the payload root, without '..'",
            )
        ]
    columns, problems = _required_columns(entry)
    problems = [
        Problem(pointer=base + p.pointer, message=p.message, expected=p.expected) for p in problems
    ]
    target = root / relative if placed is None else placed.on_disk(root / relative)
    if confine is not None and not confine.admits(target):
        problems.append(
            Problem(
                pointer=f"{base}/path",
                message=f"{path_value!r} lies outside {confine.named}; it was not read",
                expected=f"a file inside {confine.named}",
            )
        )
        return problems
    if not target.is_file():
        if entry.get("required") is True:
            problems.append(_not_a_file(path_value, target, root, f"{base}/path"))
        return problems
    if not columns:
        return problems
    delimiter = _table_delimiter(path_value)
    if delimiter is None:
        fmt = entry.get("format")
        skipped_formats.add(fmt if isinstance(fmt, str) else Path(path_value).suffix)
        return problems
    try:
        # a table that is a symlink (a datalad or git-annex dataset, a link to another
        # output) is read at its target: a run's check admitted that target above, by
        # its real path; read_header still refuses a FIFO or a device there
        header = read_header(Path(os.path.realpath(target)), delimiter)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error, gzip.BadGzipFile) as exc:
        problems.append(
            Problem(
                pointer=f"{base}/path",
                message=f"cannot read the header of {path_value!r}: {os_reason(exc)}",
                expected="a readable table",
            )
        )
        return problems
    if header is None:
        # one problem, not each key column against an empty list of columns
        problems.append(
            Problem(
                pointer=f"{base}/path",
                message=f"{path_value!r} is empty: it has no header line",
                expected="a header line naming the key columns",
            )
        )
        return problems
    present = set(header)
    for column, pointer in columns:
        if column not in present:
            problems.append(
                Problem(
                    pointer=base + pointer,
                    message=f"column {column!r} is not in the header of {path_value!r}",
                    expected="one of the header's columns: " + ", ".join(header),
                )
            )
    return problems


def _not_a_file(path_value: str, target: Path, root: Path, pointer: str) -> Problem:
    """What a required entry names instead of a file: a folder, something else, nothing."""
    where = f"under {str(root)!r}"
    if target.is_dir():
        message, expected = f"is a folder {where}, not a file", "a file, not a folder"
    elif os.path.lexists(target):  # a FIFO, a device, a socket, a link to nothing
        message, expected = f"is not a regular file {where}", "a regular file"
    else:
        message, expected = f"does not exist {where}", "the file to exist"
    return Problem(
        pointer=pointer, message=f"required file {path_value!r} {message}", expected=expected
    )


def validate_file(
    path: Path, *, confine: Path | Readable | None = None, placed: Placement | None = None
) -> BundleReport:
    """Read and validate one sidecar file; unreadable JSON is a problem, not a crash.

    The sidecar is read only as a regular file (not a FIFO or device) of at
    most `safefs.PARSE_LIMIT` bytes; anything else is reported as a problem
    without reading it. A sidecar that is a symlink (a datalad or git-annex
    dataset keeps every file so) is read at its target, as its tables are,
    but with `confine` only when that target may be read (rule 4 of
    docs/resultbundles.md). `confine` and `placed` are passed to `validate_data`.
    """
    if confine is not None and os.path.islink(path):
        readable = Readable.of(confine)
        if not readable.admits(path):
            return _unread(
                path,
                f"{str(path)!r} is a symlink to a file outside {readable.named}; it was not read",
                expected=f"a file inside {readable.named}",
            )
    try:
        data = parse_sidecar(read_regular(Path(os.path.realpath(path))))
    except json.JSONDecodeError as exc:
        return _unread(
            path,
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            expected="a JSON object",
        )
    except UnsafeFile as exc:
        return _unread(path, str(exc))
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        return _unread(path, f"unreadable: {os_reason(exc, path)}")
    return validate_data(data, path, confine=confine, placed=placed)


def _unread(path: Path, message: str, expected: str | None = None) -> BundleReport:
    """The report of a sidecar whose contents were never looked at: one problem, the file's."""
    return BundleReport(
        path=str(path),
        valid=False,
        problems=[Problem(pointer="", message=message, expected=expected)],
    )


def find_sidecars(
    folder: Path, *, follow_links: bool = False, unfollowed: list[str] | None = None
) -> list[Path]:
    """Every resultbundle.json under folder (recursively), each folder's before those of
    its sub-folders, sub-folders in name order.

    A symlink to a folder is not followed, as `find` and `du` do not: a link to
    `/` or `/proc` inside a results tree made `bundles validate` walk the whole
    machine, or hang in it. A link that leads out of the tree is added to
    `unfollowed` (its path and target), so the caller can name it; one that
    stays inside leads to a folder the walk reaches anyway. With
    `follow_links` (`bundles validate --follow-links`: a study that links a
    plugin's output in) every linked folder is searched, each real folder
    once, so a link loop ends. The walk is a loop, not recursion (`os.walk` is
    recursive before Python 3.12): an output 1500 folders deep made the run's
    bundle check and `bundles validate` fail with RecursionError. A folder
    that cannot be listed is passed over, as `os.walk` does.
    """
    found = []
    seen: set[str] = set()
    top = os.path.realpath(folder)
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        if follow_links:
            real = os.path.realpath(current)
            if real in seen:
                continue
            seen.add(real)
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError:
            continue
        folders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # a link to a folder is no sidecar, as for os.walk
            except OSError:
                is_dir = False
            if not is_dir:
                if entry.name == SIDECAR_NAME:
                    found.append(Path(current) / SIDECAR_NAME)
            elif follow_links or not entry.is_symlink():
                folders.append(entry.path)
            elif unfollowed is not None:
                target = os.path.realpath(entry.path)
                if os.path.commonpath([top, target]) != top:
                    unfollowed.append(f"{entry.path!r} -> {target!r}")
        pending.extend(sorted(folders, reverse=True))
    return found


# --- the writer --------------------------------------------------------------------


def infer_format(path: str) -> str:
    name = path.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    suffix = Path(name).suffix
    return suffix.lstrip(".") or "binary"


def producer_from_run() -> Producer | None:
    """The producer of a sidecar written inside `mdivicom run`, from the run's environment."""
    ref = os.environ.get("MDIVICOM_PLUGIN")
    version = os.environ.get("MDIVICOM_PLUGIN_VERSION")
    if not ref or not version:
        return None
    return Producer(
        tool_ref=ref, tool_version=version, pipeline_run_id=os.environ.get("MDIVICOM_RUN_ID")
    )


def _walk_files(root: Path) -> Iterator[str]:
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield (Path(current) / name).relative_to(root).as_posix()


def build_resultbundle(
    root: str | Path,
    *,
    resultbundle_type: str,
    schema_version: str = "1.0.0",
    time_reference: TimeReference | dict[str, str] | None = None,
    files: Iterable[BundleFile] | None = None,
    roles: dict[str, str] | None = None,
    key_columns: dict[str, dict[str, str]] | None = None,
    times: dict[str, FileTime] | None = None,
    producer: Producer | None = None,
    upstream_tool: UpstreamTool | None = None,
) -> ResultBundle:
    """A sidecar describing the files under `root`.

    Without `files`, every file under root (but the sidecar itself) is listed,
    required, with its format inferred from the extension and the role from
    `roles` (by path; default "data"); `key_columns` and `times` attach join and
    time keys by path. Without `time_reference`, a bundle with time columns is
    on the session clock in seconds and one without any is
    `{"kind": "none", "unit": "none"}`. The producer comes from the surrounding
    `mdivicom run` when there is one.
    """
    base = Path(root)
    if files is None:
        roles = roles or {}
        key_columns = key_columns or {}
        times = times or {}
        files = [
            BundleFile(
                path=path,
                role=roles.get(path, "data"),
                format=infer_format(path),
                required=True,
                key_columns=key_columns.get(path),
                time=times.get(path),
            )
            for path in _walk_files(base)
            if path != SIDECAR_NAME
        ]
    files = list(files)
    if time_reference is None:
        # seconds on the session clock only when a file has a time column; a bundle
        # of per-session summaries has no time axis and must not claim one
        timed = any(entry.time is not None for entry in files)
        time_reference = NO_TIME_AXIS if not timed else TimeReference(kind="session", unit="s")
    elif isinstance(time_reference, dict):
        time_reference = msgspec.convert(time_reference, TimeReference)
    return ResultBundle(
        resultbundle_type=resultbundle_type,
        schema_version=schema_version,
        time_reference=time_reference,
        files=files,
        created_at=iso(utc_now(), "seconds"),
        producer=producer or producer_from_run(),
        upstream_tool=upstream_tool,
    )


def write_resultbundle(root: str | Path, **options: Any) -> Path:
    """Build a sidecar for `root` (see build_resultbundle) and write it there.

    Returns the sidecar's path. Raises ValueError if the result would not
    validate, so a plugin never hands on a broken bundle by accident.
    """
    bundle = build_resultbundle(root, **options)
    path = Path(root) / SIDECAR_NAME
    unnamed = [f.path for f in bundle.files if display_name(f.path)[1]]
    if unnamed:
        # JSON holds only text: written escaped (`caf\\xe9.tsv`), the entry would name
        # a file that does not exist, and the sidecar would be invalid on disk
        raise ValueError(
            "the result bundle would be invalid: file name(s) that are not UTF-8, which a "
            "sidecar cannot name: "
            + ", ".join(repr(display_name(name)[0]) for name in unnamed)
            + "; rename them, or pass files= without them"
        )
    encoded = pretty(bundle)
    # what is checked is what is written: the bytes, read back as every reader will
    report = validate_data(parse_sidecar(encoded), path)
    if not report.valid:
        raise ValueError("the result bundle would be invalid: " + "; ".join(report.messages()))
    # whole and durable, as records are: the record of the run lists the sidecar as valid
    write_atomic(path, encoded)
    return path


def load_resultbundle(path: str | Path) -> tuple[ResultBundle, dict[str, Any]]:
    """The typed sidecar and its unknown top-level fields (kept, never rejected).

    A file that is no sidecar raises `ValueError` naming it and why (JSON that
    does not parse or is not an object, a field of the wrong type, NaN), as
    the writer does: a consumer gets one exception type, not an
    AttributeError from deep inside. `OSError` when it cannot be read.
    """
    try:
        data = parse_sidecar(Path(path).read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{str(path)!r} is not a result bundle: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{str(path)!r} is not a result bundle: it holds a JSON {type(data).__name__}, "
            "not an object"
        )
    problems = json_problems(data)
    if problems:
        first = problems[0]
        raise ValueError(f"{str(path)!r} is not a result bundle: {first.pointer}: {first.message}")
    known = set(ResultBundle.__struct_fields__)
    try:
        bundle = msgspec.convert({k: v for k, v in data.items() if k in known}, ResultBundle)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{str(path)!r} is not a result bundle: {schema_text(str(exc))}") from exc
    return bundle, {k: v for k, v in data.items() if k not in known}


def resultbundle_schema() -> dict[str, Any]:
    return struct_schema(
        ResultBundle,
        "mdivicomtools result bundle sidecar (resultbundle.json)",
        "openSIDS v0.1 result bundle sidecar; unknown fields are allowed.",
    )
