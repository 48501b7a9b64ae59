"""The lengths a path may have: NAME_MAX for each name, PATH_MAX for the whole.

Past them every system call on the path fails with ENAMETOOLONG, which reached
users as `internal error (OSError: [Errno 36] File name too long ...)` from
`runs list` or `verify`, as `validation hook 'mdivicomtools.validation' raised
OSError` from `run`, or as a dataset that "cannot be read ... check its
permissions". Checked once, on the path as given, the message names the limit
and the fix instead.
"""

from __future__ import annotations

import os

#: Linux's values, for a system that does not say (pathconf unsupported)
DEFAULT_NAME_MAX = 255
DEFAULT_PATH_MAX = 4096
#: how much of an over-long name a message shows
_SHOWN = 24


def shortened(text: str, keep: int = 60) -> str:
    """`text`, or its start and end around `...` when it is longer than a line."""
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-keep:]}"


def _nearest_existing(path: str) -> str:
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path or os.sep


def _limit(path: str, name: str, default: int) -> int:
    pathconf = getattr(os, "pathconf", None)  # POSIX only
    if pathconf is None:
        return default
    try:
        return int(pathconf(path, name))
    except (OSError, ValueError):
        return default


def path_too_long(path: str, headroom: int = 0) -> str | None:
    """Why `path` (absolute) is too long for this system, else None.

    `headroom`: bytes the caller will add below it (the run's own files below
    `--out`), which must fit under PATH_MAX too.
    """
    encoded = os.fsencode(path)
    where = _nearest_existing(path)
    name_max = _limit(where, "PC_NAME_MAX", DEFAULT_NAME_MAX)
    for name in encoded.split(b"/"):
        if len(name) > name_max:
            shown = os.fsdecode(name[:_SHOWN])
            return (
                f"its name '{shown}...' is {len(name)} bytes long, and this file system "
                f"allows {name_max} (NAME_MAX); choose a shorter path"
            )
    path_max = _limit(where, "PC_PATH_MAX", DEFAULT_PATH_MAX)
    # PATH_MAX counts the terminating NUL byte
    if len(encoded) + headroom >= path_max:
        extra = f" ({len(encoded) + headroom} with what is written below it)" if headroom else ""
        return (
            f"it is {len(encoded)} bytes long{extra}, and a path may have at most "
            f"{path_max - 1} here (PATH_MAX); choose a shorter path"
        )
    return None
