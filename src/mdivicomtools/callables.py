"""Importing a plugin's `entry.callable`, which happens only when it runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class CallableImportError(Exception):
    """`entry.callable` could not be imported or is not callable."""


def import_callable(ref: str) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CallableImportError(
            f"cannot import {module_name!r} for entry.callable {ref!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise CallableImportError(
                f"entry.callable {ref!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise CallableImportError(f"entry.callable {ref!r} is a {type(target).__name__}")
    return target
