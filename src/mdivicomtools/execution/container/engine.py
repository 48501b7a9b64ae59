"""The engine-specific operations a container backend needs, as a Protocol.

An engine distribution (mdivicomtools-docker, mdivicomtools-podman) supplies
one ContainerEngine, a thin adapter over its client library; everything that
must be the same on every engine is in `runtime` and `plan`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import msgspec

from mdivicomtools.common.text import one_line, os_reason
from mdivicomtools.errors import MdivicomError
from mdivicomtools.execution.container.logstream import Frame
from mdivicomtools.execution.container.plan import ContainerPlan


class EngineError(MdivicomError):
    """An engine call failed; the message says which call and why."""


class EngineUnreachable(EngineError):
    """No engine answers at the expected endpoint; `fix` says how, when the cause is known."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


def engine_reason(exc: BaseException) -> str:
    """Why an engine library's call failed, in the engine's or the system's words.

    docker-py and requests wrap the cause in their own exceptions, whose text
    is a Python repr (`('Connection aborted.', FileNotFoundError(2, ...))`) or
    an HTTP trace (`500 Server Error for http+docker://localhost/v1.41/...`):
    jargon in a one-line error. The engine's own explanation of an API error
    is what it said; for a connection that failed, the system's reason
    (`Connection refused`, `No such file or directory`) says what went wrong.
    """
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if isinstance(explanation, str) and explanation.strip():
        return one_line(explanation)
    cause = os_cause(exc)
    if cause is not None:
        return os_reason(cause)  # and the file, when it was one (`images save -o`)
    return one_line(str(exc))


def os_cause(exc: BaseException) -> OSError | None:
    """The first OSError with a reason (errno and strerror) in `exc`'s chain or in the
    arguments that carry it (requests keeps the socket's error in a tuple of its
    ConnectionError's arguments), nearest first; None when there is none."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        item = pending.pop(0)
        if isinstance(item, tuple):
            pending += list(item)
            continue
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item
        pending += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


def socket_refusal_fix(endpoint: str, check: str) -> str:
    """The fix for an engine socket that refuses this user (EACCES): a service
    account or a CI job's uid outside the socket's group, told before to start
    an engine that was running. `check` is the command that must answer.

    Its group is named only when membership would help (the socket is
    group-writable): `usermod -aG root` for a 0600 socket would not.
    """
    how = "or as a user the socket allows"
    if endpoint.startswith("unix://"):
        try:
            status = os.stat(endpoint[len("unix://") :])
        except OSError:
            status = None
        if status is not None and status.st_mode & stat.S_IWGRP and status.st_gid != 0:
            group = _name(status.st_gid, "grp")
            how = (
                f"or as a member of its group {group!r} (`sudo usermod -aG {group} USER`, "
                "then log in again)"
            )
        elif status is not None and status.st_uid != 0:
            how = f"or as its owner {_name(status.st_uid, 'pwd')!r}"
    who = f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"
    return (
        f"{who} may not use the engine's socket {endpoint}: run "
        f"as root, {how}; `{check}` must answer for the user running mdivicom"
    )


def _name(number: int, database: str) -> str:
    """The user (`pwd`) or group (`grp`) name of `number`, or the number."""
    import grp
    import pwd

    try:
        if database == "grp":
            return grp.getgrgid(number).gr_name
        return pwd.getpwuid(number).pw_name
    except KeyError:
        return str(number)


def refuses_this_user(endpoint: str) -> bool:
    """Whether `endpoint` is a local socket that exists but this user may not connect to
    (connecting needs write permission on the socket file)."""
    if not endpoint.startswith("unix://"):
        return False
    path = endpoint[len("unix://") :]
    try:
        os.stat(path)
    except PermissionError:  # in a folder this user may not enter
        return True
    except OSError:
        return False
    return not os.access(path, os.W_OK)


class ImageFacts(msgspec.Struct, kw_only=True):
    id: str
    repo_digests: list[str] = []
    size: int | None = None


class GpuSupport(msgspec.Struct, kw_only=True, frozen=True):
    """Whether an engine can serve GPU requests, and what that was judged from."""

    available: bool
    detail: str


class ContainerEngine(Protocol):
    """The engine-specific operations; each raises EngineError on failure."""

    name: str
    endpoint: str

    def version(self) -> str: ...
    def image(self, ref: str) -> ImageFacts | None: ...
    def pull(self, ref: str) -> None: ...
    def create(self, plan: ContainerPlan) -> str: ...
    def mounts(self, container_id: str) -> dict[str, bool]: ...
    def start(self, container_id: str) -> None: ...
    def logs(self, container_id: str) -> Iterator[Frame]: ...
    def all_logs(self, container_id: str) -> Iterable[Frame]: ...
    def wait(self, container_id: str) -> int: ...
    def state(self, container_id: str) -> tuple[int | None, bool]: ...
    def stop(self, container_id: str, grace_s: int) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]: ...
    def close(self) -> None: ...
    def gpu_support(self) -> GpuSupport: ...
    def save(self, refs: list[str], path: Path) -> None: ...
    def load(self, path: Path) -> list[str]: ...
