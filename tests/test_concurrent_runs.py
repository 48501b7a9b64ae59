"""Several people and scripts using one results folder at the same time.

Runs of different plugins share a `--out` (and a batch's session folders);
runs of one plugin are kept apart by its lock in `_runs/`. Each test puts two
of them side by side at the moment that used to go wrong.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from mdivicomtools.runner.staging import OutputLocked, plugin_lock


def test_a_lock_file_another_users_umask_made_read_only_still_locks():
    """In a group-shared --out, the lock file the first user made (umask 022: 0644)
    could not be opened for writing by the second user, and every run of that
    plugin by anyone else was refused with `cannot write into --out`. flock needs
    only an open file: a read-only one locks as well."""
    # not under pytest's tmp_path, which only its owner may enter
    shared = Path(tempfile.mkdtemp(prefix="mdivicom-shared-"))
    try:
        shared.chmod(0o777)  # as a group-writable folder is to the group
        (shared / "_runs").mkdir()
        (shared / "_runs").chmod(0o777)
        lock = shared / "_runs" / ".p.lock"
        lock.touch()
        lock.chmod(0o444)
        child = os.fork()
        if child == 0:  # pragma: no cover - reported through the exit status
            code = 4
            try:
                if os.getuid() == 0:  # root opens anything: be another user
                    os.setgid(65534)
                    os.setuid(65534)
                with plugin_lock(shared, "p"):
                    code = 3
                    try:  # and it is held: a second run is refused
                        with plugin_lock(shared, "p"):
                            pass
                    except OutputLocked:
                        code = 0
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)
