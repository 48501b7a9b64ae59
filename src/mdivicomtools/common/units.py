"""Sizes as people write them for container limits ("512m", "2g", "64MiB") and back,
and the one rule for a limit given as a plain number (seconds, CPUs).

One parser for the manifest, the user config and the command line, so "2g"
means the same bytes wherever it is written; engines receive plain bytes.
"""

from __future__ import annotations

import math
import re

_SIZE_RE = r"(?i)^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$"
_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int, what: str) -> int:
    """Bytes for `value`: an int of bytes, or a number with k/m/g/t (powers of 1024,
    as Docker and Podman read them; "b", "ib" suffixes allowed). Raises ValueError
    naming `what` when it is not a size."""
    if isinstance(value, bool):
        raise ValueError(f'{what} must be a size such as "512m" or "2g", got {value!r}')
    if isinstance(value, int):
        size = value
    else:
        match = re.match(_SIZE_RE, value)
        if match is None:
            raise ValueError(
                f"{what} {value!r} is not a size; write bytes or a number with k, m, g or t "
                '(powers of 1024), such as "512m" or "2g"'
            )
        size = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"{what} must be more than 0 bytes, got {value!r}")
    return size


#: the least memory limit Docker starts a container with ("Minimum memory limit
#: allowed is 6MB"); Podman's runc fails below it with only `runc start ... failed:
#: exit status 1`, so a lower limit is refused before any engine is asked
MIN_MEMORY = 6 * 1024**2


def parse_memory(value: str | int, what: str) -> int:
    """Bytes of a memory limit (`parse_size`), refused below the engines' minimum."""
    size = parse_size(value, what)
    if size < MIN_MEMORY:
        raise ValueError(
            f"{what} {value!r} is below 6 MiB, the least memory Docker and Podman start a "
            'container with; give at least "6m"'
        )
    return size


def is_positive(value: float) -> bool:
    """Whether `value` can be a limit: above 0 and finite.

    `value <= 0` alone lets NaN through (it compares false with everything), and
    `float` parses "nan" and "inf" from the command line and TOML: a NaN timeout
    stopped a python plugin at once, and a NaN or infinite CPU limit crashed the
    engine call after the run had started.
    """
    return math.isfinite(value) and value > 0


def format_size(size: int) -> str:
    """`size` bytes in the largest binary unit that keeps it short: "64 MiB", "1.5 GiB"."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"
