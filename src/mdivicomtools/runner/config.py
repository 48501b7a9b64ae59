"""Run configuration: `--config` and `--set` parsing, hashing and redaction.

The hash is computed on the unredacted config in one canonical JSON form, so
two runs with the same settings share a `config_sha256` however the settings
were spelled on the command line; the record itself shows secrets redacted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mdivicomtools.common import tomlio
from mdivicomtools.common.home import expand_home
from mdivicomtools.common.jsonio import find_unsafe_json
from mdivicomtools.common.secrets import REDACTED, is_secret_key, redact  # noqa: F401 - re-exported
from mdivicomtools.common.text import printable
from mdivicomtools.errors import UsageError


class ConfigError(UsageError):
    """A config that cannot be read or merged; nothing was run."""


def command_line_text(value: str, what: str) -> str:
    """`value` as the text it was typed as, when it came through argv.

    Python decodes argv in the locale's encoding and keeps each byte it cannot
    decode as a surrogate escape: under the C locale with PYTHONUTF8=0 every
    non-ASCII byte is one, so `--set label=Grüße` from a UTF-8 terminal reached
    the config as `Gr\\udcc3\\udcbc...`, which no JSON (the record, the config's
    sha256) can hold: `internal error`. Such a value is read as UTF-8, as a
    UTF-8 locale reads it, so the record does not depend on the locale. Bytes
    that are not UTF-8 (a Latin-1 terminal in a UTF-8 or C locale) name no text
    a record can hold: a ConfigError (exit 2) that says so.
    """
    if not any("\udc80" <= char <= "\udcff" for char in value):
        return value
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:  # characters and escapes: the escapes are UTF-8's own
        raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} '{printable(value)}' is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "set the terminal to UTF-8, or write the value into a UTF-8 --config file"
        ) from None


def _not_text(value: object, path: str) -> str | None:
    """The first string of a config that is not text (surrogate escapes, as a
    caller of run_plugin can pass a name from os.listdir), by its place."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} is not UTF-8 text: '{printable(value)}'"
        return None
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _not_text(v, f"{path}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _not_text(key, f"{path} key") or _not_text(item, f"{path}.{key}")
            if problem:
                return problem
    return None


def _load_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte order mark is no error
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config: {str(path)!r} is not UTF-8 text (at byte offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    if path.suffix == ".toml":
        try:
            return tomlio.loads(text)
        except tomlio.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {str(path)!r} is not valid TOML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config: {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None


def parse_config_option(value: str | None) -> dict[str, Any]:
    """`--config` takes a JSON object, or a path to a .json or .toml file."""
    if value is None or not value.strip():
        return {}
    text = value.strip()
    if text.startswith("{"):
        text = command_line_text(text, "--config")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--config: not valid JSON: {exc.msg} at column {exc.colno}; quote it for the "
                """shell, e.g. --config '{"max_lag_s": 5}'"""
            ) from None
    else:
        path = expand_home(text)
        if path.suffix not in (".json", ".toml"):
            raise ConfigError(
                f"--config: {text!r} is neither a JSON object nor a .json/.toml file path"
            )
        if not path.is_file():
            raise ConfigError(f"--config: no such file {text!r}")
        data = _load_file(path)
    if not isinstance(data, dict):
        # `got list`: Python's name for the array of a file the message did not name
        raise ConfigError(
            f"--config: {text!r} holds {_json_kind(data)}, not an object of config keys; "
            """write one such as {"max_lag_s": 5}"""
        )
    return data


def _not_json_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} overflows a float")
    return number


def _parse_set_value(raw: str) -> Any:
    """VALUE of `--set KEY=VALUE`: strict JSON when it parses, else the string as written.

    Python's json accepts NaN, Infinity and -Infinity, and turns 1e999 into inf;
    none of them is JSON, and a config holding one is refused later as not
    JSON-safe, so `--set a=NaN` would fail although docs/running.md promises
    that what is not JSON is kept as a string. An integer too long for Python to
    convert is kept as written too.
    """
    try:
        return json.loads(raw, parse_constant=_not_json_constant, parse_float=_finite_float)
    except ValueError:  # JSONDecodeError, a non-JSON constant, an overflow, a huge int
        return raw


def apply_sets(config: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """Apply `--set a.b=VALUE` assignments to a copy of `config`.

    VALUE is parsed as JSON when it parses (`1`, `true`, `[1,2]`, `"x"`), otherwise
    kept as a plain string, so `--set name=alice` needs no extra quoting.
    """
    if isinstance(assignments, str):  # would be taken a character at a time
        raise TypeError(
            f"sets must be a list of KEY=VALUE strings, got the string {assignments!r}; "
            f"write sets=[{assignments!r}]"
        )
    merged = copy.deepcopy(config)
    for assignment in assignments:
        assignment = command_line_text(assignment, "--set")
        key, sep, raw = assignment.partition("=")
        parts = key.split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(
                f"--set {assignment!r}: expected KEY=VALUE with a dotted KEY such as "
                "sync.max_lag_s=5"
            )
        value = _parse_set_value(raw)
        node = merged
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"--set {assignment!r}: {where} is already {_json_kind(child)}, not an object"
                )
            node = child
        node[parts[-1]] = value
    return merged


def _json_kind(value: object) -> str:
    """`value` as the JSON the user wrote it in: "a int" or "a NoneType" told them
    Python's names for their number or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({json.dumps(value)})"
    if isinstance(value, str):
        return f"a string ({json.dumps(value, ensure_ascii=False)})"
    return "an array" if isinstance(value, list) else f"a {type(value).__name__}"


def build_config(config_option: str | dict[str, Any] | None, sets: Iterable[str] = ()) -> dict:
    """The run's config: `--config` first, then each `--set` in order."""
    base = config_option if isinstance(config_option, dict) else parse_config_option(config_option)
    merged = apply_sets(base, sets)
    problem = find_unsafe_json(merged, "config") or _not_text(merged, "config")
    if problem:
        raise ConfigError(f"the config is not JSON-safe: {problem}")
    return merged


def canonical_json(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_sha256(config: dict[str, Any]) -> str:
    """sha256 of the unredacted config in canonical JSON (docs/reference/run-record.md)."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()
