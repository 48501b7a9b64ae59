"""The runner's side of the `mdivicom` supervisor: telling it which runs are open.

The `mdivicom` command runs each run in a child of a small supervisor process
(cli.supervisor). If that child dies from a signal (a native crash in a python
plugin run in-process, the OOM killer), only the supervisor is left to finish
the runs the child had started; it learns them from the lines written here.
Nothing is written anywhere else: the library called from Python (run_plugin)
has no supervisor, and a process forked from the runner (a batch worker, an
isolated plugin) never writes to its parent's channel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_channel: tuple[int, int] | None = None


def attach(fd: int) -> None:
    """Make this process report its runs on `fd` (called once, in the supervised child).

    The descriptor is non-blocking: a full pipe loses a line rather than stalling
    a run, and the worst that costs is a crashed run shown later as `abandoned`.
    """
    global _channel
    os.set_blocking(fd, False)
    _channel = (fd, os.getpid())


def _send(message: dict[str, str]) -> None:
    if _channel is None:
        return
    fd, pid = _channel
    if os.getpid() != pid:  # a forked worker inherits the descriptor, not the duty
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        return


def run_started(record_path: Path, staging_dir: Path) -> None:
    """The run's `running` record exists; its staging folder may follow."""
    _send({"event": "started", "record": str(record_path), "staging": str(staging_dir)})


def run_finished(record_path: Path) -> None:
    """The run's final record is written (or could not be): nothing left to finish."""
    _send({"event": "finished", "record": str(record_path)})


def printed() -> None:
    """The command wrote its `--json` document: the supervisor must not write
    another should the process die afterwards (a native library's crash at exit)."""
    _send({"event": "printed"})
