"""The python execution backend: in-process by default, a child process when isolated.

In-process is cheapest and what most plugins need. `--isolate` (implied by
`--timeout`) runs the plugin in a child interpreter of its own session, so a
segfault or `os._exit` in native code cannot take the runner down, a timeout can
be enforced, and Ctrl-C stops exactly that process group.

The whole process group goes when the child ends, however it ends: processes
the plugin started and left behind (a daemon, a child ignoring SIGTERM) are
killed, and the runner never waits for the end of an output stream that such
a process holds open. The child reports back through a pipe, not a file, so a
full disk is reported as the plugin's own error rather than as a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import msgspec

from mdivicomtools.common.jsonio import find_unsafe_json
from mdivicomtools.common.platform import interpreter, python_version
from mdivicomtools.common.signals import signals_seen
from mdivicomtools.common.text import printable, some
from mdivicomtools.common.timing import STOP_GRACE_S
from mdivicomtools.execution.base import Availability
from mdivicomtools.execution.outputpipe import OutputPipe
from mdivicomtools.execution.process_state import ProcessState
from mdivicomtools.execution.python_child import (
    CallableImportError,
    ChildJob,
    ChildReport,
    call_plugin,
    failure_message,
    import_callable,
    result_warnings,
)
from mdivicomtools.execution.runlog import RunLog
from mdivicomtools.model.run import ErrorInfo, RunOutcome, RunRequest


def _keep_result(outcome: RunOutcome, value: Any, problem: str | None, warnings: list[str]) -> None:
    """Keep a JSON-safe return value; the `warnings` it carries become the run's.

    A plugin that wants a person to look at something (a low-confidence result,
    a skipped stream) returns `{"warnings": ["..."]}`; those reach the record's
    `warnings` and the terminal, not just a report file nobody opens. They do so
    also when the rest of the value is not kept (a numpy integer beside them):
    dropping them with it hid what the plugin asked a person to see.
    """
    if problem:
        if problem.endswith("not a JSON value"):
            # a numerical plugin's `rms.mean()` is a numpy float64: the whole value
            # was dropped, naming the type but not the one call that keeps it
            problem += (
                "; convert it before returning: float(x), int(x) or x.tolist() for "
                "numpy values, str(path), a list for a tuple or set"
            )
        outcome.warnings.append(f"the plugin's return value was not kept: {problem}")
    else:
        outcome.result = value
    outcome.warnings.extend(warnings)


class PythonBackend:
    """Runs `kind: python` plugins with this interpreter."""

    name = "python"
    kinds = frozenset({"python"})

    def availability(self) -> Availability:
        return Availability(available=True, engine=interpreter(), version=python_version())

    def preflight(self, request: RunRequest) -> list[str]:
        return []  # importing the plugin is part of the run, so its failure is recorded

    def close(self) -> None:
        return None

    def execute(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None:
        outcome.engine = interpreter()
        if request.isolate or request.timeout is not None:
            self._run_isolated(request, outcome, log)
        else:
            self._run_in_process(request, outcome, log)
        _warn_of_writes_beside_out_dir(request, outcome)

    # -- in-process -------------------------------------------------------------

    def _run_in_process(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None:
        assert request.spec.entry is not None  # kind python is validated to have one
        # descriptor 1 is the run log's already: the runner captures it around execute()
        threads_before = set(threading.enumerate())
        with (
            log.capture_python_streams(),
            _in_process_call(request.plugin_env()) as call,
            signals_seen() as signals,
            _callers_event_loop_hidden(),
        ):
            try:
                func = import_callable(request.spec.entry.callable)
                value = call_plugin(
                    func,
                    str(request.dataset_dir),
                    str(outcome.staging_dir),
                    copy.deepcopy(request.config),
                    work_dir=str(request.work_dir),
                    dry_run=request.dry_run,
                )
            except CallableImportError as exc:
                log.diagnostic(traceback.format_exc())
                outcome.fail("PluginImportError", failure_message(exc), exit_code=1)
                return
            except KeyboardInterrupt as exc:
                if signals:
                    raise  # Ctrl-C or SIGTERM: the runner records the run interrupted
                log.diagnostic(traceback.format_exc())
                outcome.fail(type(exc).__name__, failure_message(exc), exit_code=1)
                return
            except BaseException as exc:  # SystemExit, GeneratorExit, ...
                # anything else a plugin raises is its failure, never the runner's:
                # escaping here would leave the record `running` and the staging behind
                log.diagnostic(traceback.format_exc())
                outcome.fail(type(exc).__name__, failure_message(exc), exit_code=1)
                return
            finally:
                if not call.overlapped:
                    _warn_of_threads_left(outcome, threads_before)
        outcome.status = "succeeded"
        outcome.exit_code = 0
        problem = find_unsafe_json(value, "result") if value is not None else None
        _keep_result(outcome, value, problem, result_warnings(value))

    # -- isolated ---------------------------------------------------------------

    def _run_isolated(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None:
        assert request.spec.entry is not None
        report_read, report_write = os.pipe()
        output = OutputPipe(log.write)
        job = ChildJob(
            callable=request.spec.entry.callable,
            dataset_dir=os.fsencode(request.dataset_dir),
            out_dir=os.fsencode(outcome.staging_dir),
            work_dir=os.fsencode(request.work_dir),
            config=request.config,
            dry_run=request.dry_run,
            result_path="",
            report_fd=report_write,
            runner_pid=os.getpid(),
            output_end=output.marker.hex(),
        )
        env = dict(os.environ)
        # the child must import what this process can, including sys.path entries
        # added at run time (embedding applications, test fixtures)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(request.plugin_env())
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mdivicomtools.execution.python_child"],
                stdin=subprocess.PIPE,
                stdout=output.write_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                pass_fds=(report_write,),
            )
        except BaseException:
            os.close(report_read)
            output.close_write_end()
            output.start()
            output.finish(marked=False)
            raise
        finally:
            os.close(report_write)
            output.close_write_end()
        output.start()
        reports: list[bytes] = []
        report_reader = threading.Thread(target=_read_all, args=(report_read, reports), daemon=True)
        report_reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(msgspec.json.encode(job))
            proc.stdin.close()
            deadline = None if request.timeout is None else time.monotonic() + request.timeout
            try:
                returncode = proc.wait(
                    timeout=None if deadline is None else max(0.0, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                _stop(proc)
                _drain(output, log, marked=False)
                outcome.status = "timed_out"
                outcome.error = _timeout_error(request.timeout)
                return
        except BaseException:
            _stop(proc)
            _drain(output, log, marked=False)
            raise
        finally:
            # whatever the plugin left running in its session goes with it
            _kill_group(proc.pid)
            report_reader.join(timeout=STOP_GRACE_S)
        report = _decode_report(b"".join(reports))
        # the child marks the end of its output after sending its report
        _drain(output, log, marked=report is not None)
        if report is not None and report.error is not None and report.error.traceback:
            log.diagnostic(report.error.traceback)
        self._interpret(outcome, returncode, report)

    @staticmethod
    def _interpret(outcome: RunOutcome, returncode: int, report: ChildReport | None) -> None:
        if returncode == 0 and report is not None and report.ok:
            outcome.status = "succeeded"
            outcome.exit_code = 0
            _keep_result(outcome, report.result, report.unsafe, report.warnings)
            return
        if report is not None and report.error is not None:
            error = report.error
            outcome.fail(error.type, error.message or error.type, exit_code=returncode)
        elif returncode < 0:
            name = signal.Signals(-returncode).name
            outcome.fail(
                "PluginCrashed",
                f"the plugin process was killed by {name}",
                exit_code=128 - returncode,
            )
        else:
            outcome.fail(
                "PluginExited",
                f"the plugin process exited with status {returncode} without returning "
                "(os._exit or a crash in native code?)",
                exit_code=returncode,
            )


#: how the warning of _warn_of_writes_beside_out_dir starts (`plugins check` fails on it)
WROTE_BESIDE_OUT_DIR = "the plugin wrote beside its out_dir"


def _warn_of_writes_beside_out_dir(request: RunRequest, outcome: RunOutcome) -> None:
    """Name what the plugin wrote into the run's staging folder beside its out_dir.

    A plugin that takes `out_dir` for `<out>/<id>/` and writes a shared file
    into its parent (`Path(out_dir).parent / "summary.csv"`) writes into
    `_staging/<run_id>/`, which is removed after the run: the file was lost
    without a word. Only a python plugin can reach that folder (a container
    gets its out_dir mounted), and the runner puts nothing else there but the
    default work folder.
    """
    staging = outcome.staging_dir
    allowed = {staging.name}
    if request.work_dir.parent == staging.parent:
        allowed.add(request.work_dir.name)
    try:
        stray = sorted(
            entry.name + ("/" if entry.is_dir() else "")
            for entry in os.scandir(staging.parent)
            if entry.name not in allowed
        )
    except OSError:
        return
    if stray:
        names = some([printable(name) for name in stray], 5)
        outcome.warnings.append(
            f"{WROTE_BESIDE_OUT_DIR}, into the run's staging folder, which is removed "
            f"after the run, so it is not kept: {names} (write into out_dir itself)"
        )


def _warn_of_threads_left(outcome: RunOutcome, before: set[threading.Thread]) -> None:
    """Name the threads the plugin started and left running when run() returned.

    A script's interpreter waits for such threads at exit, and so does the
    isolated child; in-process the run goes on to finalise without them, and
    `mdivicom` ends them when it exits: what they still write was silently
    missing from the outputs (or landed in a staging folder already gone).
    Only a call that no other in-process call overlapped can tell its threads
    from another run's.
    """
    left = sorted(
        thread.name
        for thread in threading.enumerate()
        if thread not in before and not thread.daemon and thread.is_alive()
    )
    if left:
        names = some([repr(name) for name in left], 5)
        outcome.warnings.append(
            f"the plugin's run() returned while {len(left)} thread(s) it started still ran "
            f"({names}); what they do after that is not part of the run: join them "
            "before returning (--isolate waits for them, as Python does at exit)"
        )


class HardExit(SystemExit):
    """An in-process plugin called os._exit: stopped and recorded instead of
    ending the runner with an undocumented exit status."""


class _Call:
    """One in-process call, as _in_process_call sees it."""

    def __init__(self) -> None:
        #: another in-process call ran at the same time at some moment (threads)
        self.overlapped = False


#: the in-process plugin calls running now (several when run_plugin is called from
#: several threads), each with its plugin environment, oldest first
_calls: dict[_Call, dict[str, str]] = {}
_calls_lock = threading.Lock()
#: the environment, sys.path, root logger and working folder before the first call,
#: put back after the last
_state_before: list[ProcessState] = []
_real_exit: list[Any] = []


@contextlib.contextmanager
def _in_process_call(variables: dict[str, str]) -> Iterator[_Call]:
    """Set what the process shares with an in-process plugin for the call: its
    environment variables, and os._exit raising HardExit; and put back the
    working folder a plugin's os.chdir changed (an API caller's next relative
    path would resolve in the plugin's folder), and the environment, sys.path
    and root logger it changed (the next session on a Dask worker ran with
    them: process_state.py).

    os._exit skips every handler, so without this the runner would vanish with
    the plugin's status and no record. A crash in native code cannot be caught
    in-process; `--isolate` covers that. A process the plugin forks
    (multiprocessing's fork workers end with os._exit) exits for real: raising
    there sent the child back into the plugin as a second runner.

    Both belong to the process while calls may overlap in threads, so they are
    set by the first call and put back by the last: saving and restoring per
    call left os._exit replaced and MDIVICOM_RUN_ID set after calls that
    ended out of order. While calls overlap, the variables are the newest
    call's (`isolate=True` gives each run its own).
    """
    token = _Call()
    with _calls_lock:
        if _calls:
            for call in (*_calls, token):
                call.overlapped = True
        else:
            _state_before[:] = [ProcessState()]
            _real_exit[:] = [os._exit]
            os._exit = _refusing_exit(os._exit, os.getpid())  # type: ignore[assignment]
        _calls[token] = variables
        os.environ.update(variables)
    try:
        yield token
    finally:
        with _calls_lock:
            del _calls[token]
            if _calls:
                os.environ.update(list(_calls.values())[-1])
            else:
                _state_before.pop().restore()
                os._exit = _real_exit.pop()


@contextlib.contextmanager
def _callers_event_loop_hidden() -> Iterator[None]:
    """Run the plugin on this thread as if no event loop were running here.

    A notebook kernel runs each cell inside its own asyncio loop, so an
    in-process plugin that called `asyncio.run()` (an async HTTP client, a
    device SDK) failed with `asyncio.run() cannot be called from a running
    event loop` in a notebook only, where `mdivicom run` and a script ran it.
    That loop is the caller's, blocked until the plugin returns; the plugin's
    own loop runs meanwhile and the caller's is this thread's again afterwards.
    """
    running = asyncio._get_running_loop()  # documented for loop implementations
    if running is None:
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(running)


def _after_fork_in_child() -> None:
    """A lock another thread held when a plugin forked would be held for ever in the
    child (see common/streams.py): the child gets a new one."""
    global _calls_lock
    _calls_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _refusing_exit(real: Any, pid: int) -> Any:
    def refuse(status: int) -> None:
        if os.getpid() != pid:  # a child the plugin forked
            real(status)
        raise HardExit(f"the plugin called os._exit({status}); a plugin must return or raise")

    return refuse


def _timeout_error(timeout: float | None) -> ErrorInfo:
    return ErrorInfo(
        type="Timeout", message=f"the plugin did not finish within {timeout:g} s and was stopped"
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's whole process group, then SIGKILL it after a grace period.

    The grace period ends when every process of the group is gone, not only
    the child: a grandchild that ignores SIGTERM is killed after STOP_GRACE_S.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            break
        time.sleep(0.05)
    _kill_group(proc.pid)
    proc.wait()


def _drain(output: OutputPipe, log: RunLog, *, marked: bool) -> None:
    """Log the rest of the output; a process that escaped the group (setsid) may
    hold the pipe open for ever, and the run does not wait for it."""
    if not output.finish(marked=marked):
        log.write(
            "[mdivicom] a process the plugin started left its session and still holds "
            "the output open; its later output is not logged\n"
        )


def _read_all(fd: int, into: list[bytes]) -> None:
    with contextlib.suppress(OSError), open(fd, "rb") as handle:
        into.append(handle.read())


def _decode_report(data: bytes) -> ChildReport | None:
    try:
        return msgspec.json.decode(data, type=ChildReport)
    except msgspec.DecodeError:
        return None
