"""The batch summary, `<out>/_batches/<batch_id>.json`, written whatever happens."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Literal

import msgspec

from mdivicomtools.batch.plan import BatchPlan
from mdivicomtools.batch.session import SessionResult
from mdivicomtools.common.jsonio import write_json_atomic
from mdivicomtools.common.timefmt import iso
from mdivicomtools.model.layout import batch_summary_path
from mdivicomtools.model.options import BatchOptions

BATCH_SCHEMA = "mdivicomtools.batch.v1"

BatchStatus = Literal["succeeded", "failed", "interrupted"]


class BatchSummary(msgspec.Struct, kw_only=True):
    """`<out>/_batches/<batch_id>.json`."""

    schema: str = BATCH_SCHEMA
    batch_id: str
    status: BatchStatus
    plugin: str
    plugin_version: str
    config_sha256: str
    dataset_dir: str
    out_dir: str
    sessions_glob: str
    executor: str
    scheduler: str | None
    jobs: int
    started_at: str
    finished_at: str
    duration_s: float
    totals: dict[str, int]
    sessions: list[SessionResult]

    @property
    def path(self) -> Path:
        return batch_summary_path(Path(self.out_dir), self.batch_id)


class BatchSummaryInterrupted(KeyboardInterrupt):
    """An interrupted batch, after its summary was written."""

    def __init__(self, summary: BatchSummary, path: Path) -> None:
        super().__init__(summary.batch_id)
        self.summary = summary
        self.path = path


def summarise(
    plan: BatchPlan,
    batch: BatchOptions,
    *,
    batch_id: str,
    executor: str,
    address: str | None,
    jobs: int,
    results: list[SessionResult],
    interrupted: bool,
    started: datetime,
    finished: datetime,
) -> BatchSummary:
    """Build the summary and write it; the caller decides what to raise."""
    ordered = sorted([*plan.skipped, *results], key=lambda r: r.session)
    bad = {"failed", "timed_out"}
    status: BatchStatus = (
        "interrupted"
        if interrupted
        else "failed"
        if any(r.status in bad for r in ordered)
        else "succeeded"
    )
    summary = BatchSummary(
        batch_id=batch_id,
        status=status,
        plugin=plan.plugin.ref,
        plugin_version=plan.plugin.version,
        config_sha256=plan.config_sha256,
        dataset_dir=str(plan.dataset_dir),
        out_dir=str(plan.out_dir),
        sessions_glob=batch.sessions,
        executor=executor,
        scheduler=address,
        jobs=jobs,
        started_at=iso(started),
        finished_at=iso(finished),
        duration_s=round((finished - started).total_seconds(), 3),
        totals=dict(Counter(r.status for r in ordered)),
        sessions=ordered,
    )
    write_json_atomic(summary.path, summary)
    return summary
