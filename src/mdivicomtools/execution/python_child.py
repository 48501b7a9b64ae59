"""The child process of an isolated python run (`--isolate`, `--timeout`).

Reads a ChildJob from stdin, imports and calls the plugin, and writes a
ChildReport file; its stdout and stderr are the run log. A crash or `os._exit`
here costs only this process: the runner sees the exit status and records it.
Importing a plugin's `entry.callable` lives here too, because both lanes (in
this process or in the child) do it the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

from mdivicomtools.common.jsonio import encode, find_unsafe_json
from mdivicomtools.common.platform import die_with_parent
from mdivicomtools.common.text import a_type, exception_text, one_line
from mdivicomtools.model.run import EXIT_CODES


class CallableImportError(Exception):
    """`entry.callable` could not be imported, or is no plain function to call."""


class ChildJob(msgspec.Struct, kw_only=True, frozen=True):
    """What the runner asks the child to do."""

    callable: str
    #: the folders as bytes (base64 in the JSON): a name that is not UTF-8, or any
    #: non-ASCII name under the C locale with PYTHONUTF8=0, is a str with surrogate
    #: escapes, which JSON text cannot hold; the child decodes them as the runner
    #: did, so the plugin gets the same str an in-process run gives it
    dataset_dir: bytes
    out_dir: bytes
    work_dir: bytes
    config: dict[str, Any]
    dry_run: bool
    #: unused since reports go through `report_fd`; kept so older jobs still decode
    result_path: str = ""
    #: the inherited pipe the report is written to (no file: a full disk cannot lose it)
    report_fd: int = -1
    #: the runner's pid, to notice a runner that died before the child started
    runner_pid: int = 0
    #: written (hex-decoded) to stdout as the child's last output: the runner then
    #: knows all the child wrote is logged (execution/outputpipe.py)
    output_end: str = ""


class ChildError(msgspec.Struct, kw_only=True, frozen=True):
    type: str
    message: str
    #: kept for the run log; the terminal shows it only with -v
    traceback: str = ""


class ChildReport(msgspec.Struct, kw_only=True, frozen=True):
    """What the child tells the runner; absent when the child died."""

    ok: bool
    result: Any = None
    unsafe: str | None = None
    #: the warnings the return value carries, also when it is not kept (`unsafe`)
    warnings: list[str] = []
    error: ChildError | None = None


def import_callable(ref: str) -> Callable[..., Any]:
    module_name, _, attr_path = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CallableImportError(
            f"cannot import {module_name!r} for entry.callable {ref!r}: "
            f"{type(exc).__name__}: {exc}{_missing_module_fix(exc, module_name)}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise CallableImportError(
                f"entry.callable {ref!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise CallableImportError(f"entry.callable {ref!r} is {a_type(target)}")
    if inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target):
        # called, it would return a coroutine nobody awaits: the run would end
        # `succeeded` without the plugin having done anything
        raise CallableImportError(
            f"entry.callable {ref!r} is an async function; the runner calls run() and "
            "takes what it returns, so make it a plain def (call asyncio.run(...) inside it)"
        )
    if inspect.isgeneratorfunction(target):
        # the same: called, it returns a generator and runs none of its body (a
        # `yield` left in run() by mistake), and the run ended `succeeded`, empty
        raise CallableImportError(
            f"entry.callable {ref!r} is a generator function (it has a `yield`); the runner "
            "calls run() and takes what it returns, so make it return its result"
        )
    problem = signature_problem(target)
    if problem:
        # called, it raised `TypeError: run() got an unexpected keyword argument
        # 'work_dir'`, which read as a fault inside the plugin's own code
        raise CallableImportError(
            f"entry.callable {ref!r}: {problem}; the contract's signature is "
            "run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False)"
        )
    return target


def _missing_module_fix(exc: Exception, module_name: str) -> str:
    """How to mend a ModuleNotFoundError: a package the plugin's code imports that
    its own package did not bring (the author's `dependencies` lack it), or a
    module of entry.callable that is not there. The bare `No module named
    'scipy'` named neither which it was nor where to install it."""
    missing = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not missing:
        return ""
    wanted = module_name.split(".")
    if missing.split(".") == wanted[: missing.count(".") + 1]:
        return (
            f"; {missing!r} is not installed in {sys.executable}: install the plugin's "
            "package there, or mend entry.callable if it is misspelt"
        )
    return (
        f"; the plugin imports {missing!r}, not installed in {sys.executable}: install it "
        "there; the plugin's package should list it in its dependencies"
    )


def signature_problem(func: Any) -> str | None:
    """How `func` does not take the contract's call, or None (also when it cannot be
    inspected, as a builtin)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None  # builtins and the like: nothing to inspect
    params = list(signature.parameters.values())
    # entry.callable may name any function: `run2() must ...`, not `run()`
    name = getattr(func, "__name__", "run")
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = any(p.kind is p.VAR_POSITIONAL for p in params)
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    if len(positional) < 3 and not var_positional:
        return f"{name}() must accept (dataset_dir, out_dir, config) positionally"
    names = {p.name for p in params}
    missing = [n for n in ("work_dir", "dry_run") if n not in names and not var_keyword]
    if missing:
        return f"{name}() must accept the keyword argument(s) " + ", ".join(missing)
    return None


def result_warnings(value: Any) -> list[str]:
    """The warnings for the record that a return value carries: its top-level
    `warnings` when that is a list of strings, else a note that it was not; and a
    note when its `status` names a run that did not succeed.

    The examples return `{"status": "ok", ...}`, so a plugin returning `{"status":
    "failed", ...}` for bad input reads as failing it; the run was recorded
    `succeeded`, its batch said so and `--resume` skipped it, without a word.
    """
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    status = value.get("status")
    if isinstance(status, str) and EXIT_CODES.get(status, 0) != 0:
        found.append(
            f"the plugin returned status {status!r} but did not raise, so the run counts as "
            "succeeded; a plugin fails its run by raising an exception"
        )
    if "warnings" not in value:
        return found
    returned = value["warnings"]
    if isinstance(returned, list) and all(isinstance(w, str) for w in returned):
        return [*returned, *found]
    return [
        "the plugin returned `warnings` that is not a list of strings; it was not used",
        *found,
    ]


def failure_message(exc: BaseException) -> str:
    """The record's error message for what a plugin's run() let out, the same in
    either lane: one line, as the record promises (the log keeps the traceback
    whole).

    The message of an exception is the plugin's text: a newline in it broke the
    one-line message, a huge one flooded the terminal's summary, and an empty
    one said `ValueError()` in-process but `ValueError` isolated. `sys.exit(n)`
    and a KeyboardInterrupt the plugin raised itself say what the plugin did,
    not `SystemExit: 0` or `KeyboardInterrupt: KeyboardInterrupt`.
    """
    if type(exc) is SystemExit:  # HardExit, a subclass, has its own message
        called = "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
        return one_line(f"the plugin called {called}; a plugin must return or raise an Exception")
    if isinstance(exc, KeyboardInterrupt):
        return (
            "the plugin raised KeyboardInterrupt with no Ctrl-C or SIGTERM sent; "
            "a plugin must return or raise an Exception"
        )
    # exception_text: a __str__ that raises blamed the backend in-process, and the
    # isolated child died reporting it
    return one_line(exception_text(exc)) or type(exc).__name__


def call_plugin(
    func: Callable[..., Any],
    dataset_dir: str,
    out_dir: str,
    config: dict[str, Any],
    *,
    work_dir: str,
    dry_run: bool,
) -> Any:
    """Call a plugin's run() as the contract says, in either lane.

    A process the plugin forked that comes back out of the call (it returned
    from run(), or raised out of it, instead of ending with os._exit) ends
    here: past this point it would go on as a second runner, with the run's
    record and report to write. `sys.exit(n)` ends it with n, as Python would.
    """
    pid = os.getpid()
    try:
        value = func(dataset_dir, out_dir, config, work_dir=work_dir, dry_run=dry_run)
    except BaseException as exc:
        if os.getpid() != pid:
            _end_forked(exc)
        raise
    if os.getpid() != pid:
        _end_forked(None)
    return value


def _end_forked(exc: BaseException | None) -> None:
    if isinstance(exc, SystemExit):
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if not isinstance(code, int) and code is not None:
            _say(f"{code}\n")
    else:
        status = 0 if exc is None else 1
        how = "returned from" if exc is None else f"raised {type(exc).__name__} out of"
        detail = "" if exc is None else "".join(traceback.format_exception(exc))
        _say(
            f"{detail}[mdivicom] process {os.getpid()}, which the plugin forked, {how} the "
            f"plugin's run() and was ended there with status {status} (a forked process "
            "ends with os._exit or sys.exit)\n"
        )
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))


def _send(job: ChildJob, report: ChildReport) -> None:
    # a str the plugin returned from a name that is not UTF-8 killed the child here
    data = encode(report)
    with open(job.report_fd, "wb") as handle:
        handle.write(data)


def main() -> int:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=ChildJob)
    _write_the_log_as_in_process()
    try:
        return _main(job)
    finally:
        _mark_output_end(job)


def _write_the_log_as_in_process() -> None:
    """Give the plugin the stdout and stderr an in-process run gives it: UTF-8, a
    name's surrogate escapes written as the bytes they stand for.

    Both go to the run log. Under the C locale with PYTHONUTF8=0 they were ASCII
    and strict here, so `print("Grüße")` failed an isolated run
    (UnicodeEncodeError) that succeeded without --isolate. The plugin's own
    subprocesses keep the locale they inherit.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")  # type: ignore[union-attr]


def _mark_output_end(job: ChildJob) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if job.output_end:
        with contextlib.suppress(OSError, ValueError):
            os.write(1, bytes.fromhex(job.output_end))


def _main(job: ChildJob) -> int:
    # an isolated plugin never outlives a runner killed with SIGKILL
    die_with_parent(signal.SIGKILL)
    # processes the plugin starts must not hold the report pipe open
    os.set_inheritable(job.report_fd, False)
    if job.runner_pid and os.getppid() != job.runner_pid:  # the runner died already
        return 1
    try:
        try:
            func = import_callable(job.callable)
        except CallableImportError as exc:
            # the same error type as in-process, whichever lane ran it
            error = ChildError(
                type="PluginImportError",
                message=failure_message(exc),
                traceback=traceback.format_exc(),
            )
            _send(job, ChildReport(ok=False, error=error))
            return 1
        value = call_plugin(
            func,
            os.fsdecode(job.dataset_dir),
            os.fsdecode(job.out_dir),
            job.config,
            work_dir=os.fsdecode(job.work_dir),
            dry_run=job.dry_run,
        )
    except BaseException as exc:  # report everything, SystemExit included
        error = ChildError(
            type=type(exc).__name__, message=failure_message(exc), traceback=traceback.format_exc()
        )
        report = ChildReport(ok=False, error=error)
        _send(job, report)
        return 1
    problem = find_unsafe_json(value, "result") if value is not None else None
    report = ChildReport(
        ok=True,
        result=None if problem else value,
        unsafe=problem,
        warnings=result_warnings(value),
    )
    _send(job, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
