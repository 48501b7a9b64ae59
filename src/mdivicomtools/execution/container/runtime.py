"""Running container plugins, whatever the engine.

Everything that must be the same on Docker and Podman lives here: the checks
before a container starts, timeouts, Ctrl-C, leftovers, logs and what goes
into the record. The engine adapters only supply a ContainerEngine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from mdivicomtools.common.platform import pid_alive
from mdivicomtools.common.timing import POLL_S
from mdivicomtools.common.units import format_size
from mdivicomtools.execution.base import Availability
from mdivicomtools.execution.container.engine import (
    ContainerEngine,
    EngineError,
    GpuSupport,
    ImageFacts,
)
from mdivicomtools.execution.container.logstream import LineJoiner, joined
from mdivicomtools.execution.container.plan import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_RUN_ID,
    ContainerPlan,
    build_plan,
    describe_gpus,
    describe_plan,
)
from mdivicomtools.execution.runlog import RunLog
from mdivicomtools.model.imageref import is_pinned, missing_image_fix, registry_of
from mdivicomtools.model.run import ContainerInfo, ErrorInfo, RunOutcome, RunRequest

#: how long close() waits for a container's removal to finish
REMOVE_WAIT_S = 60.0
#: the line before a container's complete stored log, written when the live stream
#: lost or reordered part of the output
LOG_RESENT_MARKER = (
    "[mdivicom] the engine's live log stream lost or reordered part of the output; "
    "the container's complete log follows"
)


class PullTimedOut(EngineError):
    """A pull did not finish within --timeout; the run records `timed_out`."""


def bounded_pull(
    engine: ContainerEngine,
    ref: str,
    timeout: float | None,
    hint: str = "pull it beforehand (`mdivicom images pull`) or raise --timeout",
) -> None:
    """Pull in a helper thread, so --timeout and Ctrl-C stop the wait.

    A registry that accepts connections and never answers would otherwise hold
    the runner for as long as the engine's own timeouts allow (minutes). The
    helper's connection closes when the runner's process ends (or the backend
    closes its engine), and both engines then abandon the pull.
    """
    outcome: dict[str, BaseException] = {}

    def pull() -> None:
        try:
            engine.pull(ref)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=pull, name="mdivicom-pull", daemon=True)
    worker.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while worker.is_alive():
        if deadline is not None and time.monotonic() >= deadline:
            raise PullTimedOut(
                f"pulling {ref!r} from {registry_of(ref)} did not finish within --timeout "
                f"{timeout:g} s (is the registry reachable?); {hint}"
            )
        worker.join(timeout=POLL_S)  # short waits: Ctrl-C is seen between them
    if "error" in outcome:
        raise outcome["error"]


def _pinned_digest(ref: str) -> str | None:
    return ref.split("@", 1)[1] if "@sha256:" in ref else None


def _pin_problem(engine: ContainerEngine, ref: str, facts: ImageFacts) -> str | None:
    pinned = _pinned_digest(ref)
    if pinned and not any(d.endswith("@" + pinned) for d in facts.repo_digests):
        return (
            f"image {ref!r} is pinned to {pinned}, but {engine.name}'s image has digests "
            f"{facts.repo_digests or 'none'}; refusing an image that may have changed"
        )
    return None


#: exit status of a process killed by SIGKILL (128 + 9), as the OOM killer leaves it
EXIT_SIGKILL = 137


#: strerror(EAGAIN), glibc's and musl's alike: what fork() and pthread_create() fail
#: with once a container's pids limit is reached (`sh: can't fork: ...`)
FORK_REFUSED = "Resource temporarily unavailable"
#: how much of the end of the run log is searched for FORK_REFUSED
_LOG_TAIL = 256 * 1024
#: words of which one, on FORK_REFUSED's line or the lines just above it (a
#: traceback's), says a process or thread was being started: the same strerror
#: is what a lock taken without waiting (`flock(LOCK_NB)`) or a non-blocking read
#: fails with, and such a failure said "it hit its limit of N processes"
_STARTING = (b"fork", b"clone", b"spawn", b"thread")
#: how many lines above FORK_REFUSED are looked at for one of _STARTING
_LINES_ABOVE = 3


def _exit_status(exit_code: int | None) -> str:
    """`the container exited with status 137 (killed by SIGKILL; ...)`.

    A bare `status 137` left the user to know that it is 128 + 9; the engine
    said it was no out-of-memory kill, so that is said too (a `docker kill`, a
    SIGKILL from the host, a tool's own `kill -9`).
    """
    said = f"the container exited with status {exit_code}"
    if exit_code is None or not 128 < exit_code < 128 + signal.NSIG:
        return said
    try:
        name = signal.Signals(exit_code - 128).name
    except ValueError:
        return said
    if exit_code == EXIT_SIGKILL:
        return f"{said} (killed by {name}; the engine reports no out-of-memory kill)"
    return f"{said} (killed by {name})"


def _said_no_more_processes(log: RunLog) -> bool:
    """Whether the end of the container's log holds FORK_REFUSED.

    A container that reaches its pids limit is not killed: its fork() fails
    and it exits as it sees fit (`sh` with status 2), which the run called
    `the container exited with status 2`. The engines report nothing about
    the limit (Docker's and Podman's inspect have no such field, and the
    container's cgroup is gone once it has exited), so the log is the evidence:
    FORK_REFUSED where a process or thread was being started (`sh: can't fork:
    ...`, a Python traceback through `_fork_exec`), not any EAGAIN.
    """
    try:
        with open(log.path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - _LOG_TAIL))
            lines = handle.read().splitlines()
    except OSError:
        return False
    refused = FORK_REFUSED.encode()
    return any(
        refused in line
        and any(
            word in above.lower()
            for above in lines[max(0, at - _LINES_ABOVE) : at + 1]
            for word in _STARTING
        )
        for at, line in enumerate(lines)
    )


def host_oom_kills() -> int | None:
    """The host kernel's count of OOM kills so far (/proc/vmstat), None where unreadable.

    Podman 4.3 on cgroup v1 never sets OOMKilled (its conmon misses the cgroup's OOM
    event), so for an engine on this host a rise of this counter while a
    memory-limited container ran, ending with SIGKILL, is the evidence instead.
    """
    try:
        with open("/proc/vmstat", encoding="ascii") as stats:
            for line in stats:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _grace(plan: ContainerPlan) -> int:
    """Whole seconds for the engine's stop call (both APIs take an integer)."""
    return math.ceil(plan.settings.stop_grace_s)


class _LogFollower:
    """Copies a container's output into the run log while it runs, and completes it after.

    Following the stream keeps the log live, but the stream is not the record:
    it is cut when the container exits, and may have ended early or skipped
    data. So the engine's stored log is then read as a stream (never held whole:
    it is as large as all the tool printed) and checked against what was
    copied (same length prefix, same SHA-256): the missing tail is
    appended, or, when the stream lost or reordered data, a marker line and the
    complete stored log follow, so the log always ends complete. Both copies go
    through `logstream`, which writes whole lines only, so stdout and stderr
    never meet inside a line.
    """

    def __init__(self, engine: ContainerEngine, container_id: str, log: RunLog) -> None:
        self._engine = engine
        self._container_id = container_id
        self._log = log
        self._lock = threading.Lock()
        self._lines = LineJoiner()
        self._written = 0
        self._digest = hashlib.sha256()
        self._closed = False
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when the container is removed
            for stream, data in self._engine.logs(self._container_id):
                with self._lock:
                    if self._closed:
                        return
                    chunk = self._lines.feed(stream, data)
                    self._log.write(chunk)
                    self._written += len(chunk)
                    self._digest.update(chunk)

    def finish(self) -> None:
        """Call once the container has exited: make the log complete.

        The live stream is cut at once rather than waited for: the stored log
        has everything, and Podman keeps a followed stream open until the
        container is removed, which cost every run a wait.
        """
        with self._lock:
            self._closed = True
            written, digest = self._written, self._digest.hexdigest()
        try:
            if self._append_stored_tail(written, digest):
                return
        except _TailWritten:
            return  # the engine failed part-way: the log keeps what it had
        except Exception:  # the engine lost the log: the live copy is all there is
            self._log.write(self._lines.flush())
            return
        self._log.write(f"\n{LOG_RESENT_MARKER}\n")
        # read once more rather than kept from the comparison: the stored log can be
        # as large as everything the tool printed
        with contextlib.suppress(Exception):
            for chunk in joined(self._engine.all_logs(self._container_id)):
                self._log.write(chunk)

    def _append_stored_tail(self, written: int, digest: str) -> bool:
        """Read the stored log as a stream: its first `written` bytes are hashed and
        compared with what the live stream gave, the rest is appended to the log.
        False when they differ (the live stream lost or reordered data); then
        nothing was written."""
        prefix = hashlib.sha256()
        seen = 0
        appended = False
        try:
            for chunk in joined(self._engine.all_logs(self._container_id)):
                if seen < written:
                    head = chunk[: written - seen]
                    prefix.update(head)
                    seen += len(head)
                    chunk = chunk[len(head) :]
                    if seen < written:
                        continue
                    if prefix.hexdigest() != digest:
                        return False
                if chunk:
                    self._log.write(chunk)
                    appended = True
        except Exception as exc:
            if appended:
                raise _TailWritten from exc
            raise
        return seen == written  # shorter than what was copied: it differs


class _TailWritten(Exception):
    """The engine failed after part of the stored log's tail was appended."""


class ContainerBackend:
    """An ExecutionBackend for container plugins on top of one ContainerEngine.

    The engine is connected lazily and kept for the backend's lifetime (one
    run), so availability, preflight and execution share one connection (and,
    for Podman, one private service when it had to start one).
    """

    kinds = frozenset({"container"})

    def __init__(self, name: str, connect: Callable[[], ContainerEngine], fix: str) -> None:
        self.name = name
        self._connect = connect
        self._fix = fix
        self._engine: ContainerEngine | None = None
        self._version: str | None = None
        self._images: dict[str, ImageFacts] = {}
        self._removals: list[threading.Thread] = []

    def engine(self) -> ContainerEngine:
        if self._engine is None:
            self._engine = self._connect()
        return self._engine

    def availability(self) -> Availability:
        try:
            engine = self.engine()
            if self._version is None:
                self._version = engine.version()
        except EngineError as exc:
            fix = getattr(exc, "fix", None) or self._fix
            return Availability(available=False, reason=str(exc), fix=fix)
        return Availability(
            available=True, engine=f"{engine.name} {self._version}", version=self._version
        )

    def close(self) -> None:
        for thread in self._removals:
            thread.join(timeout=REMOVE_WAIT_S)
        self._removals.clear()
        if self._engine is not None:
            with contextlib.suppress(Exception):
                self._engine.close()
            self._engine = None

    # -- before the run ---------------------------------------------------------

    def preflight(self, request: RunRequest) -> list[str]:
        """Problems that mean the container cannot start: checked before anything runs."""
        spec = request.spec.container
        assert spec is not None
        engine = self.engine()
        ref = spec.image
        try:
            facts = engine.image(ref)
        except EngineError as exc:
            return [f"image {ref!r} (pull policy '{spec.pull}'): {exc}"]
        if spec.pull == "always" or (facts is None and spec.pull == "missing"):
            # pulled by execute(), once the run's `running` record exists: a pull can
            # hang on a registry, so it obeys --timeout and Ctrl-C and gets a record
            self._images.pop(ref, None)
            return self._gpu_problems(engine, request)
        if facts is None:
            fix = (
                missing_image_fix(ref, engine.name)
                if is_pinned(ref)
                else f"load it first (e.g. `{engine.name} load` or `{engine.name} pull`)"
            )
            return [
                f"image {ref!r} is not on {engine.name} and the plugin's pull policy is "
                f"'{spec.pull}'; {fix}, or choose another --backend"
            ]
        problem = _pin_problem(engine, ref, facts)
        if problem:
            return [problem]
        self._images[ref] = facts
        return self._gpu_problems(engine, request)

    def pull_ahead(self, request: RunRequest) -> list[str]:
        """Pull the image now, if its policy asks for a pull; the problems if that failed.

        For a batch's plan: one pull before any session starts (bounded by
        --timeout, like a run's), instead of one per session. A single run pulls
        inside the run instead, so its pull has a record.
        """
        spec = request.spec.container
        assert spec is not None
        if request.dry_run:  # a dry run pulls nothing (see _dry_run)
            return []
        engine = self.engine()
        ref = spec.image
        try:
            if spec.pull == "always" or (spec.pull == "missing" and engine.image(ref) is None):
                bounded_pull(engine, ref, request.timeout)
        except EngineError as exc:
            return [f"image {ref!r} (pull policy '{spec.pull}'): {exc}"]
        return []

    @staticmethod
    def _gpu_problems(engine: ContainerEngine, request: RunRequest) -> list[str]:
        settings = request.container
        if settings is not None and settings.gpus is not None:
            support = engine.gpu_support()
            if not support.available:
                return [
                    f"the run asks for GPUs ({describe_gpus(settings.gpus)}), but {engine.name} "
                    f"cannot serve GPU requests: {support.detail}; run where it can (see "
                    "`mdivicom backends list`), or pass --gpus none"
                ]
        return []

    def gpu_support(self) -> GpuSupport | None:
        """Whether the engine can serve GPU requests (`backends list`); None if unreachable."""
        try:
            return self.engine().gpu_support()
        except EngineError:
            return None

    # -- the run ----------------------------------------------------------------

    def execute(self, request: RunRequest, outcome: RunOutcome, log: RunLog) -> None:
        spec = request.spec.container
        assert spec is not None
        engine = self.engine()
        availability = self.availability()
        outcome.engine = availability.engine
        # the facts preflight checked (or the pull brought); the container is created
        # from exactly this image id
        facts = self._images.get(spec.image)
        if request.dry_run and facts is None:
            self._dry_run(engine, request, outcome, log)
            return
        if facts is None:
            facts = self._pull(engine, request, outcome, log)
        if facts is None:
            return
        outcome.container = ContainerInfo(
            # as the manifest names it: a pinned image id (rerun) is `image_id`
            image=request.image_name or spec.image,
            image_id=facts.id,
            repo_digests=list(facts.repo_digests),
            engine=engine.name,
            engine_version=availability.version,
            endpoint=engine.endpoint,
            applied=request.container,
        )
        config_path = outcome.staging_dir.parent / "config.json"
        # the unredacted config: readable by the user only (0600), also after a crash
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(request.config, ensure_ascii=False))
        (request.work_dir / ".tmp").mkdir(parents=True, exist_ok=True)
        plan = build_plan(request, engine.name, facts.id, outcome.staging_dir, config_path)
        if request.dry_run:
            log.write(describe_plan(plan))
            outcome.result = {"plan": msgspec.to_builtins(plan)}
            outcome.status, outcome.exit_code = "succeeded", None
            return
        self._remove_leftovers(engine, log)
        container_id = engine.create(plan)
        outcome.container.container_id = container_id
        try:
            self._run(engine, container_id, plan, request, outcome, log)
        except BaseException:
            with contextlib.suppress(Exception):
                engine.stop(container_id, _grace(plan))
            with contextlib.suppress(Exception):
                engine.remove(container_id)
            raise
        self._remove_later(engine, container_id)

    def _dry_run(
        self, engine: ContainerEngine, request: RunRequest, outcome: RunOutcome, log: RunLog
    ) -> None:
        """The plan of a run whose image would be pulled first, without pulling it.

        A dry run changes nothing, the engine's images included, and must not
        wait on a registry: the plan names the image the engine has now (under
        `pull: always`) or none, and says that a run pulls first.
        """
        spec = request.spec.container
        assert spec is not None
        try:
            local = engine.image(spec.image)
        except EngineError as exc:
            outcome.fail("EngineError", f"could not inspect image {spec.image!r}: {exc}")
            return
        local_id = local.id if local is not None else None
        outcome.container = ContainerInfo(
            image=request.image_name or spec.image,
            image_id=local_id,
            repo_digests=list(local.repo_digests) if local is not None else [],
            engine=engine.name,
            engine_version=self._version,
            endpoint=engine.endpoint,
            applied=request.container,
        )
        config_path = outcome.staging_dir.parent / "config.json"
        plan = build_plan(request, engine.name, local_id, outcome.staging_dir, config_path)
        plan.pull = (
            f"a run pulls {spec.image} from {registry_of(spec.image)} first "
            f"(pull policy '{spec.pull}')"
        )
        log.write(describe_plan(plan))
        outcome.result = {"plan": msgspec.to_builtins(plan)}
        outcome.status, outcome.exit_code = "succeeded", None

    def _pull(
        self, engine: ContainerEngine, request: RunRequest, outcome: RunOutcome, log: RunLog
    ) -> ImageFacts | None:
        """Pull the plugin's image as part of the run; None when the run ended here
        (the outcome says why: `timed_out`, or `failed` naming the image and registry)."""
        spec = request.spec.container
        assert spec is not None
        ref, registry = spec.image, registry_of(spec.image)
        log.write(f"[mdivicom] pulling {ref} from {registry} on {engine.name}\n")
        outcome.activity = f"pulling {ref!r} from {registry}"
        try:
            bounded_pull(engine, ref, request.timeout)
            facts = engine.image(ref)
        except PullTimedOut as exc:
            outcome.status, outcome.exit_code = "timed_out", None
            outcome.error = ErrorInfo(type="Timeout", message=str(exc))
            return None
        except EngineError as exc:
            outcome.fail("PullFailed", f"could not pull {ref!r} from {registry}: {exc}")
            return None
        outcome.activity = None
        if facts is None:
            outcome.fail(
                "PullFailed", f"{engine.name} reported {ref!r} pulled but does not list it"
            )
            return None
        problem = _pin_problem(engine, ref, facts)
        if problem:
            outcome.fail("ImagePinMismatch", problem)
            return None
        self._images[ref] = facts
        return facts

    def _remove_later(self, engine: ContainerEngine, container_id: str) -> None:
        """Remove the exited container while the runner inventories, promotes and records
        the outputs (an engine takes 20-60 ms to delete one); close() waits for it, so
        no run returns with its container still there."""

        def remove() -> None:
            with contextlib.suppress(Exception):
                engine.remove(container_id)

        thread = threading.Thread(target=remove, name="mdivicom-remove", daemon=True)
        thread.start()
        self._removals.append(thread)

    def _run(
        self,
        engine: ContainerEngine,
        container_id: str,
        plan: ContainerPlan,
        request: RunRequest,
        outcome: RunOutcome,
        log: RunLog,
    ) -> None:
        assert outcome.container is not None
        wanted = {m.target: not m.read_only for m in plan.mounts}
        actual = engine.mounts(container_id)
        wrong = [t for t, rw in wanted.items() if actual.get(t) is not rw]
        if wrong:
            outcome.fail(
                "MountCheckFailed",
                f"{engine.name} did not apply the requested mount modes for {', '.join(wrong)} "
                f"(wanted {wanted}, got {actual}); the container was not started",
            )
            return
        local = engine.endpoint.startswith("unix://") and plan.settings.memory is not None
        oom_before = host_oom_kills() if local else None
        engine.start(container_id)
        logs = _LogFollower(engine, container_id, log)
        logs.start()
        result: dict[str, Any] = {}
        waiter = threading.Thread(
            target=self._wait, args=(engine, container_id, result), daemon=True
        )
        waiter.start()
        deadline = None if request.timeout is None else time.monotonic() + request.timeout
        while waiter.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                engine.stop(container_id, _grace(plan))
                waiter.join(timeout=_grace(plan) + 30)
                logs.finish()
                outcome.status = "timed_out"
                outcome.exit_code = None
                outcome.error = ErrorInfo(
                    type="Timeout",
                    message=f"the container did not finish within {request.timeout:g} s "
                    "and was stopped",
                )
                self._record_state(engine, container_id, outcome)
                return
            waiter.join(timeout=POLL_S)
        logs.finish()
        if "error" in result:
            # a wait request can fail (a dropped stream, an engine under load) while the
            # container itself finished: its state is the authority on how it ended
            exit_code, _ = engine.state(container_id)
            if exit_code is None:
                raise result["error"]
            log.write(
                f"[mdivicom] waiting for the container failed ({result['error']}); "
                f"its state says it exited with status {exit_code}\n"
            )
        if result.get("status") == 0:
            # the engine's wait answer is enough for a success: no inspect request
            outcome.container.exit_code, outcome.container.oom_killed = 0, False
        else:
            self._record_state(engine, container_id, outcome)
        exit_code = outcome.container.exit_code
        outcome.exit_code = exit_code
        if (
            exit_code == EXIT_SIGKILL
            and not outcome.container.oom_killed
            and oom_before is not None
            and (host_oom_kills() or 0) > oom_before
        ):
            outcome.container.oom_killed = True
            log.write(
                f"[mdivicom] {engine.name} did not report OOMKilled, but the container was "
                "killed by SIGKILL while the host's OOM-kill count rose: out of memory\n"
            )
        if exit_code == 0:
            outcome.status = "succeeded"
        elif outcome.container.oom_killed:
            limit = plan.settings.memory
            outcome.fail(
                "OutOfMemory",
                f"out of memory (limit {format_size(limit)})"
                if limit
                else "out of memory (no limit set: the host ran out)",
                exit_code=exit_code,
            )
        elif plan.settings.pids and _said_no_more_processes(log):
            outcome.fail(
                "TooManyProcesses",
                f"{_exit_status(exit_code)} after it could not start a process or thread "
                f"(its log says {FORK_REFUSED!r}): it hit its limit of {plan.settings.pids} "
                "processes; raise `resources.pids` in the plugin's manifest",
                exit_code=exit_code,
            )
        else:
            outcome.fail("ContainerFailed", _exit_status(exit_code), exit_code=exit_code)

    @staticmethod
    def _record_state(engine: ContainerEngine, container_id: str, outcome: RunOutcome) -> None:
        assert outcome.container is not None
        exit_code, oom_killed = engine.state(container_id)
        outcome.container.exit_code = exit_code
        outcome.container.oom_killed = oom_killed

    @staticmethod
    def _wait(engine: ContainerEngine, container_id: str, result: dict[str, Any]) -> None:
        try:
            result["status"] = engine.wait(container_id)
        except Exception as exc:
            result["error"] = exc

    @staticmethod
    def _remove_leftovers(engine: ContainerEngine, log: RunLog) -> None:
        """Remove containers that a killed runner on this host left behind."""
        host = os.uname().nodename
        for container_id, labels in engine.labelled(LABEL_RUN_ID):
            if labels.get(LABEL_HOST) != host:
                continue
            try:
                pid = int(labels.get(LABEL_PID, ""))
            except ValueError:
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            with contextlib.suppress(EngineError):
                engine.stop(container_id, 0)
            with contextlib.suppress(EngineError):
                engine.remove(container_id)
                log.write(
                    f"[mdivicom] removed leftover container {container_id[:12]} of run "
                    f"{labels.get(LABEL_RUN_ID)} (its runner, pid {pid}, is gone)\n"
                )
