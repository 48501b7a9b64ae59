"""Facts about this interpreter that records and the python backend report alike."""

from __future__ import annotations

import sys


def python_version() -> str:
    info = sys.version_info
    return f"{info.major}.{info.minor}.{info.micro}"


def interpreter() -> str:
    """`CPython 3.11.7`: the python backend's engine as a record names it."""
    name = {"cpython": "CPython", "pypy": "PyPy"}.get(
        sys.implementation.name, sys.implementation.name
    )
    return f"{name} {python_version()}"
