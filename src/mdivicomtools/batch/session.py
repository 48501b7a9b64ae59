"""One session of a batch: the job a worker receives and the result it sends back.

Every session is an ordinary `run_plugin` call in the worker, so each keeps
all the guarantees of a single run (staging, records, isolation); executors
only decide where and how many at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Literal

import msgspec

from mdivicomtools.errors import MdivicomError, command_line_words
from mdivicomtools.model.options import RunOptions
from mdivicomtools.model.run import RunRecord
from mdivicomtools.runner import RunInterrupted, ValidationFailed, run_plugin

SessionStatus = Literal[
    "succeeded", "failed", "timed_out", "interrupted", "dry_run", "skipped", "not_started"
]


class SessionJob(msgspec.Struct, kw_only=True, frozen=True):
    """One session of a batch: everything a worker needs, nothing it cannot pickle.

    `options` are the batch's RunOptions with this session's dataset, out and
    work folders and the config already built (a Dask worker on another
    machine may not see a `--config` file).
    """

    session: str
    ref: str
    options: RunOptions
    #: with --resume: why this session runs again ("input changed: 3 file(s)")
    reason: str | None = None
    #: whether the batch is the command's: a worker (spawned, on Dask or Slurm) words
    #: the session's errors as its caller would, `--overwrite` or `overwrite=True`
    command_line: bool = False

    @property
    def out(self) -> str:
        return self.options.out

    @property
    def attempt(self) -> int:
        return self.options.attempt


class EarlierAttempt(msgspec.Struct, kw_only=True):
    """A try of a session that failed and was retried (`--retries`)."""

    attempt: int
    status: SessionStatus
    run_id: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    slurm_job_id: str | None = None


class SessionResult(msgspec.Struct, kw_only=True):
    session: str
    status: SessionStatus
    run_id: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    out: str | None = None
    #: with --resume: why the session ran again, or was skipped
    reason: str | None = None
    # the try this result is from, and the tries before it (`--retries`)
    attempt: int = 1
    earlier: list[EarlierAttempt] = []
    # the Slurm job the session ran in ($SLURM_JOB_ID of the worker), if any
    slurm_job_id: str | None = None
    #: the run's warnings, as its record has them: a batch shows no session's own
    #: terminal lines, and a session that succeeded with a stream it could not
    #: sync would otherwise say nothing of it there
    warnings: list[str] = []


Report = Callable[[str, SessionJob, SessionResult | None], None]


def not_started(job: SessionJob, why: str = "the batch was interrupted") -> SessionResult:
    return SessionResult(session=job.session, status="not_started", error=why, out=job.out)


#: the error prefix of a try whose end the executor did not see: its Dask future was
#: cancelled by a lost scheduler, or a second Ctrl-C stopped the wait for it. The
#: session may have run to the end anyway (a worker goes on without its scheduler),
#: so `retry.settle` reads the outcome from the session's own records
UNSEEN = "OutcomeUnseen"


def unseen(job: SessionJob, why: str) -> SessionResult:
    """A try whose outcome only its records can tell (see UNSEEN)."""
    return SessionResult(
        session=job.session, status="failed", error=f"{UNSEEN}: {why}", out=job.out
    )


def is_unseen(result: SessionResult) -> bool:
    return result.run_id is None and (result.error or "").startswith(f"{UNSEEN}: ")


def run_session(job: SessionJob) -> SessionResult:
    """Run one session in this process; every outcome becomes a SessionResult."""
    with command_line_words() if job.command_line else contextlib.nullcontext():
        return _run_session(job)


def _run_session(job: SessionJob) -> SessionResult:
    started = time.monotonic()

    def result(
        status: SessionStatus, error: str | None = None, record: RunRecord | None = None
    ) -> SessionResult:
        return SessionResult(
            session=job.session,
            status=status,
            run_id=record.run_id if record is not None else None,
            duration_s=round(time.monotonic() - started, 3),
            error=error,
            out=job.out,
            reason=job.reason,
            attempt=job.attempt,
            slurm_job_id=os.environ.get("SLURM_JOB_ID") or None,
            warnings=list(record.warnings) if record is not None else [],
        )

    try:
        record = run_plugin(job.ref, job.options)
    except RunInterrupted as exc:
        if exc.record.status != "succeeded":  # its record says what stopped it, and when
            stopped = exc.record.error
            said = f"{stopped.type}: {stopped.message}" if stopped else "interrupted"
            return result("interrupted", said, exc.record)
        # the signal came after the run had succeeded, while its provenance hooks ran:
        # the output is in place, and the session is what its record says (as a single
        # run's exit status is), so --resume does not run it again
        record = exc.record
    except KeyboardInterrupt:
        return result("interrupted", "interrupted before the run started")
    except ValidationFailed as exc:  # its message is a list of lines; a summary cell is one
        problems = "; ".join(exc.problems)
        return result("failed", f"ValidationFailed: the run was not started: {problems}")
    except MdivicomError as exc:
        return result("failed", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug must cost one session, not the batch
        return result("failed", f"{type(exc).__name__}: {exc}")
    status = record.status
    if status == "running" or status == "abandoned":
        # run_plugin returns finished records only; a backend or hook that left its
        # status unfinished failed the session (a SessionResult cannot hold it)
        return result("failed", f"UnfinishedRun: the run ended with status {status!r}", record)
    error = f"{record.error.type}: {record.error.message}" if record.error else None
    return result(status, error, record)


class SchedulerLost(Exception):
    """The connection to the Dask scheduler was lost mid-batch: no further try can run.

    Not an interruption (nobody stopped the batch) but a failure of the batch:
    `results` holds every session's try as far as the executor saw it (the
    running ones `unseen`, read from their records when settled).
    """

    def __init__(self, address: str, results: list[SessionResult]) -> None:
        super().__init__(f"the connection to the Dask scheduler at {address} was lost")
        self.address = address
        self.results = results


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a batch; `results` holds every session's outcome."""

    def __init__(self, results: list[SessionResult]) -> None:
        super().__init__("batch interrupted")
        self.results = results
