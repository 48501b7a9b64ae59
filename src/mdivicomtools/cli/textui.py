"""Plain-text rendering for the CLI's human output (tables and key/value blocks).

Kept free of click and of discovery so any command can use it and tests can
check the layout without running a command.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is never padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`key:  value` lines with the values aligned; multi-line values are indented."""
    width = max((len(key) for key, _ in pairs), default=0) + 1
    lines = []
    for key, value in pairs:
        first, *rest = value.splitlines() or [""]
        lines.append(f"{key + ':':<{width}}  {first}".rstrip())
        lines.extend(" " * (width + 2) + line for line in rest)
    return "\n".join(lines)
