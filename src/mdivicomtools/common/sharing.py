"""A --out shared by a group: telling a colleague's umask from an unwritable --out.

In a group-shared results folder each user's umask decides who may write what
they make (`_runs/`, `_batches/`, a lock, an output folder). Where one user's
umask 022 or 077 closed such a thing to the others, "choose a writable --out"
sent them looking elsewhere though the --out is writable: the fix is its
owner's chmod, and umask 002 for everyone sharing it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the end of every message about a folder or file another user's umask closed
UMASK_HINT = "everyone sharing --out needs umask 002"


def closed_by_another_user(path: Path, access: int) -> bool:
    """Whether `path` is another user's and closed to this one for `access`
    (`os.W_OK | os.X_OK`, ...); False when it cannot be looked at."""
    try:
        return path.stat().st_uid != os.geteuid() and not os.access(path, access)
    except OSError:
        return False


def closed_message(started: str, what: str, fix: str) -> str:
    """`<started>: cannot <what>, which another user's umask closed to this user; ...`."""
    return (
        f"{started}: cannot {what}, which another user's umask closed to this user; ask its "
        f"owner to make it {fix}; {UMASK_HINT}"
    )
