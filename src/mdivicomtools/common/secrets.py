"""Which config values are secrets, and how they are kept out of every message.

One rule for the record's redacted config, config validation messages and
anything else that echoes a config: a key whose name contains `key`, `token`,
`secret` or `password` (any case, at any depth) holds a secret. A plugin may
quote its config anywhere (an error message, a warning, its returned result),
so the run record's free text is scrubbed of those values too (`scrub_all`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

REDACTED = "***REDACTED***"
#: secret values shorter than this are not searched for in a record's free text:
#: a setting such as `keyframes = 5` matches the rule by its name, and blanking
#: every "5" of a plugin's messages and result would corrupt them to hide nothing
MIN_SCRUB_LENGTH = 4
_SECRET_RE = re.compile(r"key|token|secret|password", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return _SECRET_RE.search(key) is not None


#: where a value sits in a config: object keys and array indexes, outermost first
ConfigPath = tuple[str | int, ...]


def secret_paths(value: Any, path: ConfigPath = ()) -> list[ConfigPath]:
    """Where the secret values of `value` sit: under a secret-looking key, at any depth.

    The one walk both sides use: `redact` replaces what it finds, and a rerun
    asks which of these places still hold the placeholder. Two walks could
    disagree (one looked inside arrays, the other did not, and a rerun ran with
    the placeholder as the secret). Objects and arrays are both entered; a
    secret value is not (it is replaced whole, whatever its type).
    """
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in (
                [(*path, key)] if is_secret_key(str(key)) else secret_paths(item, (*path, key))
            )
        ]
    if isinstance(value, list):
        return [
            found
            for index, item in enumerate(value)
            for found in secret_paths(item, (*path, index))
        ]
    return []


def value_at(value: Any, path: ConfigPath) -> Any:
    """The value `path` (from `secret_paths`) leads to in `value`."""
    for step in path:
        value = value[step]
    return value


def format_path(path: ConfigPath) -> str:
    """`servers[0].token`: keys dotted as `--set` spells them, array items by index."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text


def redact(value: Any) -> Any:
    """A copy with the value of every secret-looking key, at any depth, replaced.

    Arrays are entered too (`servers[0].token`), by `secret_paths`.
    """
    copied = copy.deepcopy(value)
    for path in secret_paths(copied):
        *parents, last = path
        value_at(copied, tuple(parents))[last] = REDACTED
    return copied


def secret_values(value: Any) -> list[Any]:
    """Every leaf value held under a secret-looking key, at any depth."""
    found: list[Any] = []

    def leaves(node: Any) -> None:
        if isinstance(node, dict):
            for item in node.values():
                leaves(item)
        elif isinstance(node, list):
            for item in node:
                leaves(item)
        else:
            found.append(node)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if is_secret_key(str(key)):
                    leaves(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


def scrub(message: str, config: Any) -> str:
    """`message` with every secret value of `config` (as repr or as text) replaced.

    Validators quote the offending value, and a parent-level error quotes a
    whole object; scrubbing the message covers both without knowing the
    validator's wording.
    """
    for value in sorted(secret_values(config), key=lambda v: -len(str(v))):
        if value is None or isinstance(value, bool):
            continue
        for text in {repr(value), str(value)}:
            if text:
                message = message.replace(text, REDACTED)
    return message


def scrub_all(value: Any, config: Any) -> Any:
    """A copy of `value` (a message, a list of them, a plugin's JSON result) without
    the secret values of `config`.

    Only secret values of at least MIN_SCRUB_LENGTH characters (as text)
    count. Every string at any depth has their text replaced; a number under
    a secret-looking key that equals one is replaced whole (a plugin
    returning its config). Other leaves and every key are kept, so the
    result's data stays what the plugin returned.
    """
    secrets = [
        v
        for v in secret_values(config)
        if v is not None and not isinstance(v, bool) and len(str(v)) >= MIN_SCRUB_LENGTH
    ]
    if not secrets:
        return value
    texts = sorted({str(v) for v in secrets}, key=len, reverse=True)

    def text(node: str) -> str:
        for secret in texts:
            node = node.replace(secret, REDACTED)
        return node

    def walk(node: Any, secret_key: bool) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, is_secret_key(str(k))) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(item, secret_key) for item in node]
        if secret_key and not isinstance(node, bool) and node in secrets:
            return REDACTED
        return text(node) if isinstance(node, str) else node

    return walk(value, False)
