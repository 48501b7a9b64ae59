"""JSON as mdivicomtools writes it: one encoder, pretty files, durable writes, safety.

Every file a user reads (records, summaries, schemas) and every `--json`
document goes through `pretty`, so they all look the same; msgspec encodes
several times faster than json.dumps with indent, which shows with hundreds of
plugins or thousands of output files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from mdivicomtools.common.durable import write_atomic
from mdivicomtools.common.safefs import display_name
from mdivicomtools.common.text import a_type, schema_text

_T = TypeVar("_T")


def json_files(folder: Path) -> list[Path]:
    """The `*.json` files in `folder` but hidden ones, sorted; none when it is missing,
    OSError when it cannot be listed.

    Not Path.glob, which passes over a folder it may not read: a `_runs/` or
    `_batches/` another user made private (umask 077, a shared --out) read as
    one holding nothing (`No run records`, exit 0).
    """
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.endswith(".json")]
    # names sorted, not paths: comparing Path objects cost more than the listing
    return [folder / name for name in sorted(names) if not name.startswith(".")]


def encode(value: Any) -> bytes:
    """Compact JSON, which holds any string.

    A name from the disk that is not UTF-8 (a session folder, a file a plugin
    wrote or returned) reaches Python as a str with surrogate escapes, which
    JSON cannot hold: such strings are written in the escaped form
    `safefs.display_name` documents, so a record, a batch summary, a `--json`
    document or an isolated plugin's report is never lost over a file name.
    """
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:
        return msgspec.json.encode(_escaped(msgspec.to_builtins(value)))


def pretty(value: Any) -> bytes:
    """Indented JSON with a final newline (strings as `encode` writes them)."""
    return msgspec.json.format(encode(value), indent=2) + b"\n"


def _escaped(value: Any) -> Any:
    """`value` (built-in types) with every string that is not UTF-8 escaped."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return display_name(value)[0]
        return value
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as `pretty` JSON, written whole and durably (`durable.write_atomic`)."""
    write_atomic(path, pretty(value))


#: deeper values are refused: encoders and readers recurse, and a record must stay readable
MAX_DEPTH = 200


def find_unsafe_json(value: object, path: str = "$", depth: int = 0) -> str | None:
    """Return a description of the first value that would not survive JSON, or None.

    The contract requires registration data, configs and results to be JSON-safe
    so lists, records and manifests carry them unchanged; tuples, sets, objects
    and NaN would each be silently altered or rejected somewhere later. Only the
    exact built-in types pass: a numpy.float64 is a float subclass that no JSON
    encoder must be trusted with.
    """
    kind = type(value)
    if depth > MAX_DEPTH:
        return f"{path[:60]}... is nested deeper than {MAX_DEPTH} levels"
    if value is None or kind in (bool, str, int):
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    if type(value) is list:
        for index, item in enumerate(value):
            problem = find_unsafe_json(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"{path} has a non-string key {key!r}"
            problem = find_unsafe_json(item, f"{path}.{key}", depth + 1)
            if problem:
                return problem
        return None
    return f"{path} is {a_type(value)}, not a JSON value"


class ForeignLayout(msgspec.ValidationError):
    """A document whose `schema` names a layout other than the one this version reads.

    A subclass of msgspec's decode error, so every reader that already skips
    or reports an undecodable file does the same with it; the message names
    both schemas, where msgspec's own error would name the first field that
    happened not to fit.
    """


class _Schema(msgspec.Struct):
    schema: Any = None


def decode_layout(data: bytes, type: type[_T], schema: str) -> _T:
    """Decode a record, summary or manifest of the layout `schema`; refuse any other layout.

    Fields the layout does not know are ignored (a newer release of the same
    layout may add some) and fields it has defaults for may be absent (an
    older release did not write them). A document of another layout, a
    future `v2` say, is refused by its `schema` even when it would decode:
    its fields may mean something else. The schema is looked at first only
    when decoding fails, so reading a good file costs one decode.
    """
    try:
        value = msgspec.json.decode(data, type=type)
    except msgspec.DecodeError as exc:
        try:
            found = msgspec.json.decode(data, type=_Schema).schema
        except msgspec.DecodeError:
            raise _in_words(exc) from None
        if found is None or found == schema:
            raise _in_words(exc) from None
        raise _foreign(found, schema) from exc
    found = getattr(value, "schema", schema)
    if found != schema:
        raise _foreign(found, schema)
    return value


def _in_words(exc: msgspec.DecodeError) -> msgspec.DecodeError:
    """A validation error with the field and the problem in the file's words
    (`status: expected a string, got an integer`), where msgspec names Python
    types and a JSON path (`Expected `str`, got `int` - at `$.status``)."""
    if isinstance(exc, msgspec.ValidationError):
        return msgspec.ValidationError(schema_text(str(exc)))
    return exc


def _foreign(found: object, schema: str) -> ForeignLayout:
    return ForeignLayout(
        f"its schema is {found!r}, not {schema!r}, the layout this version of mdivicomtools "
        "reads; a newer mdivicomtools or another tool wrote it"
    )
