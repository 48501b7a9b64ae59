"""Running a check as another user, for tests of what one user's runs leave another."""

from __future__ import annotations

import os
from collections.abc import Callable

#: the uid and gid of `nobody` on Debian
NOBODY = 65534


def as_another_user(check: Callable[[], int]) -> int:
    """`check()`'s return value as the exit status of a forked child that runs it as
    another user (nobody) when this is root, whose permissions root would ignore;
    98 when it raised, -1 when the child did not exit."""
    child = os.fork()
    if child == 0:  # pragma: no cover - reported through the exit status
        code = 99
        try:
            if os.getuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            code = check()
        except BaseException:
            code = 98
        os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
