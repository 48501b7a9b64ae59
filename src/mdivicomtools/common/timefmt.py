"""Timestamps as records and summaries write them: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import os
from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime, timespec: str = "milliseconds") -> str:
    """`2026-11-25T22:31:56.123Z`: sortable as text and unambiguous about the zone."""
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def stamp_id(now: datetime | None = None) -> str:
    """`<UTC YYYYmmddTHHMMSSZ>_<8 hex>`: sorts by start time, unique without coordination.

    Run ids and batch ids share this form, so a folder of records sorts by time.
    """
    now = now or utc_now()
    return f"{now:%Y%m%dT%H%M%SZ}_{os.urandom(4).hex()}"
