"""How `mdivicom run --sessions` shows a batch: a live bar on a terminal, lines otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from mdivicomtools.common.text import printable

if TYPE_CHECKING:
    from mdivicomtools.batch import BatchSummary
    from mdivicomtools.batch.session import SessionJob, SessionResult


class BatchProgress:
    """Done/failed/running counts and an ETA on stderr.

    On a terminal a rich progress bar, refreshed from the main loop (no refresh
    thread: the local executor forks workers, and forking with threads running
    is unsafe); elsewhere (CI logs, pipes) one line per finished session.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.counts: Counter[str] = Counter()
        self.running = 0
        #: sessions with a failed try whose next try has not ended yet
        self.retrying = 0
        self._live: Any = None
        self._gone = False
        console = None
        if sys.stderr.isatty():
            from rich.console import Console

            console = Console(stderr=True)
        # a terminal that cannot redraw (TERM=dumb or unknown: Emacs' shell, a CI
        # runner's pty) got no line at all: rich draws the bar there only when it
        # stops, so a batch of an hour showed nothing until its end
        if console is not None and console.is_interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._live = Progress(
                TextColumn("[bold]sessions"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                auto_refresh=False,
            )
            self._task = self._live.add_task("batch", total=total, detail="")
            self._live.start()

    def event(self, kind: str, job: SessionJob, result: SessionResult | None) -> None:
        """Count sessions, not tries: a try that is retried ("retrying") is noted but
        does not move the count, so it never passes the total.

        A line or bar that cannot be written (`2>&1 | head`, a closed terminal)
        stops the display, never the batch: its summary must still be written.
        """
        if self._gone:
            return
        try:
            self._show(kind, job, result)
        except OSError:
            self._gone = True

    def _show(self, kind: str, job: SessionJob, result: SessionResult | None) -> None:
        if kind == "started":
            self.running += 1
        else:
            assert result is not None
            self.running -= 1 if result.status != "not_started" else 0
            if kind == "retrying":
                self.retrying += 1
            else:
                self.counts[result.status] += 1
                self.retrying -= 1 if job.attempt > 1 else 0
            if self._live is None:
                click.echo(
                    f"[mdivicom] {_line(kind, job, result)} ({self.done}/{self.total})", err=True
                )
        if self._live is not None:
            failed = self.counts["failed"] + self.counts["timed_out"]
            detail = (
                f"done {self.counts['succeeded']}  failed {failed}  running {max(self.running, 0)}"
            )
            if self.retrying:
                detail += f"  retrying {self.retrying}"
            self._live.update(self._task, completed=self.done, detail=detail)
            self._live.refresh()

    @property
    def done(self) -> int:
        """Sessions finished, each once whatever its tries."""
        return sum(self.counts.values())

    def close(self) -> None:
        if self._live is not None:
            with contextlib.suppress(OSError):
                self._live.stop()


def _line(kind: str, job: SessionJob, result: SessionResult) -> str:
    """`ses-02 failed: ...`; with retries, which try ended and whether another follows."""
    detail = f": {printable(result.error)}" if result.error and result.status != "succeeded" else ""
    session = printable(job.session)  # a folder name: a newline in it must not start a line
    if kind == "retrying":
        return f"{session} try {job.attempt} {result.status}, retrying{detail}"
    tried = f" on try {job.attempt}" if job.attempt > 1 else ""
    return f"{session} {result.status}{tried}{detail}{printable(_warned(result))}"


def _warned(result: SessionResult) -> str:
    """`, 2 warning(s): the first (and 1 more in its run record)`; nothing without."""
    if not result.warnings:
        return ""
    more = len(result.warnings) - 1
    return f", {len(result.warnings)} warning(s): {result.warnings[0]}" + (
        f" (and {more} more in its run record)" if more else ""
    )


def render_summary(summary: BatchSummary, path: str, out: str | None = None) -> str:
    """The sessions table and the closing lines; `out` is the folder the summary was
    read from (`batches show`), which may have been moved since the batch ran."""
    from mdivicomtools.cli.textui import table

    rows = [
        [
            r.session,
            r.status,
            str(r.attempt) if r.status != "skipped" else "-",
            r.run_id or "-",
            f"{r.duration_s:.2f}s",
            _note(r),
        ]
        for r in summary.sessions
    ]
    return "\n".join(
        [
            table(["SESSION", "STATUS", "TRIES", "RUN_ID", "DURATION", "ERROR / NOTE"], rows),
            f"{summary.status}: {summary.plugin} {summary.plugin_version} on "
            f"{len(summary.sessions)} session(s)"
            + (" so far" if summary.duration_s is None else f" in {summary.duration_s:.2f} s")
            + f" ({summary.counts()})",
            f"outputs:  {out or summary.out_dir}/<session>/",
            f"summary:  {path}",
        ]
    )


def _note(result: SessionResult) -> str:
    """The error, the run's warnings, and for a retried session what its earlier
    tries ended with."""
    note = result.error or result.reason or ""
    if result.warnings:
        note += f"{'; ' if note else ''}{_warned(result).removeprefix(', ')}"
    if result.slurm_job_id:
        note = f"slurm job {result.slurm_job_id}" + (f"; {note}" if note else "")
    for earlier in result.earlier:
        note += f"{'; ' if note else ''}try {earlier.attempt} {earlier.status}: {earlier.error}"
    return note
