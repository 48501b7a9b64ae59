"""run_session: every outcome of a session's run becomes a SessionResult a worker can send."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from mdivicomtools.batch import session
from mdivicomtools.batch.session import SessionJob, SessionResult, run_session
from mdivicomtools.model.options import RunOptions
from mdivicomtools.runner import ValidationFailed


def job(tmp_path: Path) -> SessionJob:
    options = RunOptions(dataset=str(tmp_path / "ses-01"), out=str(tmp_path / "out"))
    return SessionJob(session="ses-01", ref="any", options=options)


def returning(status: str):
    def run_plugin(ref, options):
        return SimpleNamespace(
            run_id="20240101T000000Z_0000abcd", status=status, error=None, warnings=[]
        )

    return run_plugin


def sent(result: SessionResult) -> SessionResult:
    """What the local executor's parent reads from a worker (batch/local.py _collect)."""
    return msgspec.convert(pickle.loads(pickle.dumps(msgspec.to_builtins(result))), SessionResult)


@pytest.mark.parametrize("status", ["succeeded", "failed", "timed_out", "dry_run"])
def test_a_finished_run_status_is_the_session_status(tmp_path, monkeypatch, status):
    monkeypatch.setattr(session, "run_plugin", returning(status))
    result = sent(run_session(job(tmp_path)))
    assert result.status == status
    assert result.run_id == "20240101T000000Z_0000abcd"


@pytest.mark.parametrize("status", ["running", "abandoned"])
def test_an_unfinished_run_status_fails_the_session(tmp_path, monkeypatch, status):
    # a run status a SessionResult cannot hold (only a third-party backend or hook
    # could leave one) made the result undecodable, and the local batch crash
    monkeypatch.setattr(session, "run_plugin", returning(status))
    result = sent(run_session(job(tmp_path)))
    assert result.status == "failed"
    assert result.error == f"UnfinishedRun: the run ended with status {status!r}"
    assert result.run_id == "20240101T000000Z_0000abcd"


def test_problems_found_at_run_time_are_one_line(tmp_path, monkeypatch):
    # the message of ValidationFailed is a list of lines; the batch table showed it as
    # "the run was not started:\\n  - ..." in one cell
    def refused(ref, options):
        raise ValidationFailed(["first problem", "second problem"])

    monkeypatch.setattr(session, "run_plugin", refused)
    result = sent(run_session(job(tmp_path)))
    assert result.status == "failed"
    assert result.error == (
        "ValidationFailed: the run was not started: first problem; second problem"
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [("interrupted", "interrupted"), ("failed", "interrupted"), ("succeeded", "succeeded")],
)
def test_a_signal_after_the_run_ended_leaves_the_session_what_its_record_says(
    tmp_path, monkeypatch, status, expected
):
    # Ctrl-C while a site's provenance hook hung: the output is promoted and the
    # record says `succeeded` (a single run exits 0); the batch table said
    # `interrupted`, and --resume ran the session again
    from mdivicomtools.runner import RunInterrupted

    def stopped(ref, options):
        exc = RunInterrupted.__new__(RunInterrupted)
        exc.record = SimpleNamespace(
            run_id="20240101T000000Z_0000abcd", status=status, error=None, warnings=[]
        )
        raise exc

    monkeypatch.setattr(session, "run_plugin", stopped)
    result = sent(run_session(job(tmp_path)))
    assert result.status == expected
    assert result.run_id == "20240101T000000Z_0000abcd"
    assert result.error == ("interrupted" if expected == "interrupted" else None)


@pytest.mark.parametrize(
    ("command_line", "said"),
    [(False, "pass overwrite=True to replace it"), (True, "pass --overwrite to replace it")],
)
def test_a_sessions_problems_are_worded_for_whoever_started_the_batch(
    tmp_path, monkeypatch, command_line, said
):
    """A worker that is not a fork of the command (spawned, on Dask or Slurm) worded a
    session's errors for a Python caller, and the problems of a ValidationFailed kept
    the command's flags whoever called: both now follow the batch's caller."""

    def refused(ref, options):
        raise ValidationFailed(["'out/x' already exists; pass --overwrite to replace it"])

    monkeypatch.setattr(session, "run_plugin", refused)
    given = msgspec.structs.replace(job(tmp_path), command_line=command_line)
    result = sent(run_session(given))
    assert (
        result.error == f"ValidationFailed: the run was not started: 'out/x' already exists; {said}"
    )


def test_a_batch_the_command_plans_has_its_sessions_worded_for_the_command(site, dataset):
    from mdivicomtools.batch.plan import plan_batch
    from mdivicomtools.errors import command_line_words
    from mdivicomtools.model.options import BatchOptions

    site.plugin("hello")
    options = RunOptions(dataset=str(dataset), out=str(dataset.parent / "out"))
    planned = plan_batch("hello", options, BatchOptions(sessions="*"))
    with command_line_words():
        commanded = plan_batch("hello", options, BatchOptions(sessions="*"))
    assert [job.command_line for job in planned.to_run] == [False]
    assert [job.command_line for job in commanded.to_run] == [True]
