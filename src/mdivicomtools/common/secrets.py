"""Which config values are secrets, and how they are kept out of every message.

One rule for the record's redacted config, config validation messages and
anything else that echoes a config: a key whose name contains `key`, `token`,
`secret` or `password` (any case, at any depth) holds a secret.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***REDACTED***"
_SECRET_RE = re.compile(r"key|token|secret|password", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return _SECRET_RE.search(key) is not None


def redact(value: Any) -> Any:
    """A copy with the value of every secret-looking key, at any depth, replaced."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


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
