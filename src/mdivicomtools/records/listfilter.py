"""Narrowing `runs list` to the runs asked about: by plugin, status, start time, count.

A lab's --out gathers thousands of runs over the years, and a batch's one line
per session and plugin runs into thousands too; the whole list answers "which
sessions failed" or "what ran this week" only through grep, which cannot
compare times and breaks on the table's columns. The filters work on the
headers the listing reads anyway, so narrowing costs no extra read.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, TypeVar

import msgspec

from mdivicomtools.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

T = TypeVar("T")

#: `--since 90m`: an age, as `docker ps --filter`/`docker logs --since` take it
_AGE = re.compile(r"(?P<count>\d+)(?P<unit>[smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class BadSince(UsageError):
    """A `--since` value that is neither a date, a date and time, nor an age."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The moment `--since` names, in UTC.

    An age (`30m`, `12h`, `7d`, `2w`) counts back from `now`; a date
    (`2026-11-01`) is the start of that day and a date and time
    (`2026-11-01T14:30`, seconds and an offset optional) is that moment. Times
    without an offset are UTC, as in every record's `started_at` and run id,
    so a run id can be pasted as it reads (`20261101T143000Z`, with or without
    the `_3f2a9b1c` that ends it, is accepted too: the RUN_ID column of `runs
    list` is copied whole). A moment before year 1 or after year 9999 (`--since
    99999999d`, `0001-01-01T00:00+01:00`) raised OverflowError, an internal
    error; it stands for the first or last moment a datetime holds, before or
    after every run.
    """
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        try:
            delta = timedelta(**{_UNITS[age["unit"]]: int(age["count"])})
            return (now or datetime.now(timezone.utc)) - delta
        except OverflowError:  # further back than year 1
            return datetime.min.replace(tzinfo=timezone.utc)
    compact = re.fullmatch(r"(\d{8})T(\d{6})Z?(?:_[0-9a-f]+)?", value)
    if compact:  # the stamp of a run id
        value = f"{compact[1]}T{compact[2]}"
        parse = lambda v: datetime.strptime(v, "%Y%m%dT%H%M%S")  # noqa: E731
    else:
        parse = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))  # noqa: E731
    try:
        moment = parse(value)
    except ValueError:
        raise BadSince(
            f"--since {text!r} is not a time; give an age (30m, 12h, 7d, 2w), "
            "a date (2026-11-01) or a UTC date and time (2026-11-01T14:30)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # an offset that carries it past year 1 or year 9999
        edge = datetime.min if moment.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=timezone.utc)


def started(started_at: str) -> datetime | None:
    """A record's `started_at` as a moment; None when it is not one (a damaged field
    is no reason to hide the run from a listing that asks for a time)."""
    try:
        moment = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def plugin_matches(asked: str, ref: str) -> bool:
    """`--plugin sync-audio` matches `mdivicom/sync-audio`; `--plugin lab/x` only `lab/x`."""
    if "/" in asked:
        return asked == ref
    return ref.rpartition("/")[2] == asked


class RunFilter(msgspec.Struct, kw_only=True, frozen=True):
    """What `runs list` keeps; an empty filter keeps everything."""

    #: plugin references or bare ids; a run matches any one of them
    plugins: tuple[str, ...] = ()
    #: statuses as listed (a dead runner's `running` record is `abandoned`)
    statuses: tuple[str, ...] = ()
    #: runs that started at or after this moment
    since: datetime | None = None
    #: only the newest this many of what the other filters keep
    last: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.plugins or self.statuses or self.since or self.last)

    def keep(
        self,
        items: Sequence[T],
        *,
        plugin: Callable[[T], str],
        status: Callable[[T], str],
        started_at: Callable[[T], str],
    ) -> list[T]:
        """The items that match, in their order; `last` keeps the newest by start time.

        The accessors let one filter serve the listing of a run root (a line
        per run) and of a batch (a line per session and plugin, its latest run).
        """
        kept = [
            item
            for item in items
            if (not self.plugins or any(plugin_matches(p, plugin(item)) for p in self.plugins))
            and (not self.statuses or status(item) in self.statuses)
            and (self.since is None or self._since(started_at(item)))
        ]
        if self.last is not None and len(kept) > self.last:
            # by the moment, not the text: a field that is no time ("garbage" sorts after
            # every "2026-...") counts as the oldest instead of taking the newest's place
            oldest = datetime.min.replace(tzinfo=timezone.utc)
            newest = sorted(range(len(kept)), key=lambda i: started(started_at(kept[i])) or oldest)[
                -self.last :
            ]
            kept = [kept[i] for i in sorted(newest)]
        return kept

    def _since(self, started_at: str) -> bool:
        moment = started(started_at)
        return moment is None or self.since is None or moment >= self.since
