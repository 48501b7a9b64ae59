"""One-line messages: what a table cell, a record's error or a log line can hold."""

from __future__ import annotations

#: longer reasons are cut; a broken plugin's traceback text must not flood a table
LINE_LIMIT = 400


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """Collapse whitespace (tracebacks, engine answers) and cut at `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """`Type: message` on one line, or just the type when the message is empty."""
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def describe_changes(changed: list[str], added: list[str], removed: list[str], limit: int) -> str:
    """`changed a, b and 3 more; removed c`: the paths a check found different.

    A tree-comparison message must stay one readable line however many files
    differ, so each kind names at most `limit` paths and counts the rest.
    """
    parts = []
    for label, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            shown = ", ".join(paths[:limit])
            more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
            parts.append(f"{label} {shown}{more}")
    return "; ".join(parts)
