"""The `mdivicom` supervisor: only documented exit codes reach the shell.

A python plugin runs in the runner's own process by default (the isolation
section of docs/performance.md says why). A crash in native code there, or the
kernel's OOM killer, ends that process by a signal: the shell would see 139 or
137, and the run would keep a `running` record. So `mdivicom run` and `mdivicom
rerun` fork once, first thing, while the process is single-threaded and has
imported little more than click. The child is the command, unchanged; this
parent only waits, and returns the child's exit status.

Signals: the parent passes on the ones sent to it alone (`kill PID`). One that
reached both (a terminal's Ctrl-C, a kill of the process group, Slurm or
systemd signalling every process) must not reach the child twice, so the child
reports each signal it receives on a second pipe (`signal.set_wakeup_fd`) and
the parent passes a signal on only when the child has not reported the same
one within MATCH_S. (A plugin whose asyncio loop installs signal handlers takes
the wakeup descriptor over; after that a group signal may reach the child
twice, as a double Ctrl-C would.)

When the child died from a signal, the parent finishes the runs the child had
started and not finished (learnt through an inherited pipe, see
common.supervision): record `failed` (`interrupted` for SIGINT, SIGTERM, SIGHUP,
SIGQUIT), staging removed, one line on stderr, with `--json` the record (or
the error document) on stdout unless the child had printed its own, and a
documented exit code. The
child dies with the parent (PR_SET_PDEATHSIG), so `kill -9` of `mdivicom`
still ends the run as before.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from mdivicomtools.model.run import Status

#: commands that run plugins; every other command is not worth a process
SUPERVISED = frozenset({"run", "rerun"})
#: set to 0 to run without the supervisor (a debugger, or to measure what it costs)
SWITCH_ENV = "MDIVICOM_SUPERVISOR"
INTERRUPTING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: how long a signal sent to the supervisor waits for the child to report the same one
#: (then it was sent to both) before it is passed on; also how far apart two reports
#: of one signal may be
MATCH_S = 0.25
#: the shell's codes for Ctrl-C and a closed pipe (128 + signal), which the command
#: itself uses too (cli/__init__ imports them from here, a module it loads anyway)
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
NATIVE_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def _command(args: Sequence[str]) -> str | None:
    """The subcommand of `mdivicom [-v] COMMAND ...`."""
    for arg in args:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def supervise(args: Sequence[str]) -> None:
    """Fork into supervisor and command when `args` start a run; returns in the child
    (or without forking), never in the supervisor."""
    if _command(args) not in SUPERVISED or os.environ.get(SWITCH_ENV) == "0":
        return
    import threading

    if threading.active_count() != 1 or not hasattr(signal, "sigwaitinfo"):
        return  # forking a threaded process is unsafe; without sigwaitinfo, not Linux
    waited = {signal.SIGCHLD, signal.SIGIO, *INTERRUPTING}
    read_fd, write_fd = os.pipe()
    wake_read, wake_write = os.pipe()
    # blocked before the fork, so a child that ends at once still wakes the parent
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    parent = os.getpid()
    try:
        child = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for fd in (read_fd, write_fd, wake_read, wake_write):
            os.close(fd)
        return
    if child == 0:
        from mdivicomtools.common import supervision
        from mdivicomtools.common.platform import die_with_parent

        os.close(read_fd)
        os.close(wake_read)
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent:  # the supervisor died before that took effect
            os.kill(os.getpid(), signal.SIGKILL)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        os.register_at_fork(after_in_child=lambda: _not_the_commands(wake_write))
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        supervision.attach(write_fd)
        return
    os.close(write_fd)
    os.close(wake_write)
    _exit(
        _wait(
            child,
            read_fd,
            wake_read,
            waited,
            _is_batch(args),
            _is_isolated(args),
            _json_of(args),
        )
    )


def _not_the_commands(wake_fd: int) -> None:
    """In a process forked from the command (a batch worker, a worker an in-process
    plugin forks), stop reporting signals to the supervisor.

    The report tells the supervisor which signals the command itself received:
    one a worker got (a batch passing SIGTERM on, `Pool.terminate()`) is not the
    command's, and once the supervisor is gone (`kill -9` of `mdivicom`) each
    such report failed with `Exception ignored when trying to write to the signal
    wakeup fd` and a traceback on the terminal. A wakeup descriptor the process
    set itself since (asyncio's) is left in place.
    """
    with contextlib.suppress(ValueError, OSError):
        previous = signal.set_wakeup_fd(-1)
        if previous not in (-1, wake_fd):
            signal.set_wakeup_fd(previous, warn_on_full_buffer=False)
    with contextlib.suppress(OSError):
        os.close(wake_fd)


def _exit(code: int) -> NoReturn:
    os._exit(code)


class _Forwarder:
    """Passes on to the child the signals only the supervisor received."""

    def __init__(self, child: int) -> None:
        self.child = child
        self.reported: list[tuple[int, float]] = []  # (signal, when) the child reported
        self.pending: list[tuple[int, float]] = []  # (signal, when) the supervisor got
        self.forwarded: dict[int, int] = {}  # passed on, whose report is still to come

    def child_reported(self, data: bytes, now: float) -> None:
        for signum in data:
            if self.forwarded.get(signum):
                self.forwarded[signum] -= 1  # the child reporting what we passed on
            elif signum in INTERRUPTING:
                self.reported.append((signum, now))

    def received(self, signum: int, now: float) -> None:
        self.pending.append((signum, now))

    def settle(self, now: float) -> float | None:
        """Match and pass on; returns how long until the next decision, if any."""
        self.reported = [(s, t) for s, t in self.reported if now - t <= 2 * MATCH_S]
        waiting = []
        for signum, when in self.pending:
            match = next(
                (r for r in self.reported if r[0] == signum and abs(r[1] - when) <= MATCH_S),
                None,
            )
            if match is not None:  # the child got this one itself
                self.reported.remove(match)
            elif now - when >= MATCH_S:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.child, signum)
                self.forwarded[signum] = self.forwarded.get(signum, 0) + 1
            else:
                waiting.append((signum, when))
        self.pending = waiting
        if not waiting:
            return None
        return max(0.0, min(when for _, when in waiting) + MATCH_S - now)


def _read_all(fd: int) -> bytes:
    received = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


def _is_batch(args: Sequence[str]) -> bool:
    """`run --sessions GLOB`: a batch, whose sessions run in worker processes."""
    return any(arg == "--sessions" or arg.startswith("--sessions=") for arg in args)


def _is_isolated(args: Sequence[str]) -> bool:
    """`run --isolate`: the plugin ran in a child of its own, so what killed the runner
    was not the plugin's code (advising --isolate would be advice already taken)."""
    return "--isolate" in args


def _json_of(args: Sequence[str]) -> str | None:
    """With `--json`: what the command prints, `record` (`run`, the run's record) or
    `error` (a batch, `rerun`: the error document); None without it."""
    words = list(args)
    if "--" in words:
        words = words[: words.index("--")]
    if "--json" not in words:
        return None
    return "record" if _command(args) == "run" and not _is_batch(args) else "error"


def _wait(
    child: int,
    read_fd: int,
    wake_fd: int,
    waited: set[signal.Signals],
    batch: bool = False,
    isolated: bool = False,
    as_json: str | None = None,
) -> int:
    import fcntl
    import time

    os.set_blocking(read_fd, False)
    os.set_blocking(wake_fd, False)
    # SIGIO when the child reports a signal, so its report is timed as it comes
    fcntl.fcntl(wake_fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(wake_fd, fcntl.F_SETFL, fcntl.fcntl(wake_fd, fcntl.F_GETFL) | os.O_ASYNC)
    forwarder = _Forwarder(child)
    received = bytearray()
    timeout: float | None = None
    info: signal.struct_siginfo | None
    while True:
        if timeout is None:
            info = signal.sigwaitinfo(waited)
        else:
            info = signal.sigtimedwait(waited, timeout)
        now = time.monotonic()
        received += _read_all(read_fd)
        forwarder.child_reported(_read_all(wake_fd), now)
        if info is not None and info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                break
        elif info is not None and info.si_signo in INTERRUPTING:
            forwarder.received(info.si_signo, now)
        timeout = forwarder.settle(now)
    received += _read_all(read_fd)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return _child_died(os.WTERMSIG(status), bytes(received), batch, isolated, as_json)


def _open_runs(received: bytes) -> list[tuple[str, str]]:
    """(record, staging) of each run the child started and did not finish."""
    import json

    started: dict[str, str] = {}
    for line in received.decode(errors="replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("event") == "started":
            started[message["record"]] = message["staging"]
        elif message.get("event") == "finished":
            started.pop(message.get("record"), None)
    return list(started.items())


def _printed(received: bytes) -> bool:
    """Whether the child wrote its `--json` document (`supervision.printed`)."""
    import json

    for line in received.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line).get("event") == "printed":
                return True
    return False


def _child_died(
    signum: int,
    received: bytes,
    batch: bool = False,
    isolated: bool = False,
    as_json: str | None = None,
) -> int:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    status: Status
    if signum in INTERRUPTING:
        status, code, error_type = "interrupted", EXIT_INTERRUPTED, "Interrupted"
        message = f"interrupted by {name} before the runner could record the run"
    elif signum == signal.SIGPIPE:
        status, code, error_type = "failed", EXIT_BROKEN_PIPE, "RunnerCrashed"
        message = "the runner died from SIGPIPE (the reader of its output went away)"
    else:
        from mdivicomtools.model.run import EXIT_CODES

        status, code, error_type = "failed", EXIT_CODES["failed"], "RunnerCrashed"
        if signum in NATIVE_CRASHES:
            cause = "a crash in native code: the plugin or a library it uses"
        elif signum == signal.SIGKILL:
            cause = "the kernel's OOM killer, or kill -9"
        else:
            cause = "a signal it does not handle"
        message = f"the runner died from {name} ({cause}); run with --isolate to contain it"
        if isolated:  # the plugin had a process of its own: the runner itself was hit
            message = f"the runner died from {name} ({cause}) while the plugin ran isolated"
        if batch:
            # sessions run in worker processes already: --isolate would not help
            message = (
                f"the batch process died from {name} ({cause}) and did not finish its batch "
                "summary (`mdivicom batches list OUT` shows it abandoned); each session's "
                "record says where it got to (mdivicom runs list OUT), and --resume runs the "
                "rest"
            )
    lines = []
    records = []
    runs = _open_runs(received)
    if runs:
        from pathlib import Path

        from mdivicomtools.model.run import ErrorInfo
        from mdivicomtools.runner.debris import finish_dead_run

        for record_path, staging in runs:
            error = ErrorInfo(type=error_type, message=message)
            record = finish_dead_run(Path(record_path), Path(staging), status, error)
            if record is not None:
                records.append(record)
                lines.append(f"Error: {message}; the run is recorded {status}: {record_path}")
    if not lines:
        lines.append(f"Error: {message}")
    with contextlib.suppress(OSError):
        os.write(2, ("\n".join(lines) + "\n").encode(errors="replace"))
    if as_json is not None and not _printed(received):
        # `--json` promises one document on stdout whatever happens: the child died
        # before printing its own, and a script's `jq` got nothing to parse
        from mdivicomtools.common.jsonio import pretty

        document = (
            records[0]
            if as_json == "record" and len(records) == 1
            else {"error": {"type": error_type, "message": message, "exit_code": code}}
        )
        with contextlib.suppress(OSError):
            _write_all(1, pretty(document))
    return code


def _write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (a pipe takes at most 64 KiB a write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
