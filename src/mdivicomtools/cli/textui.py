"""Plain-text rendering for the CLI's human output (tables and key/value blocks).

Kept free of click and of discovery so any command can use it and tests can
check the layout without running a command. Every cell and value goes through
`common.text.printable`: much of what is shown is record text a plugin wrote,
and a control character in it must not add a row or move the cursor.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Sequence

from mdivicomtools.common.text import printable


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is never padded.

    A cell is one line whatever it holds: control characters show escaped.
    Columns are measured as a terminal shows them (`shown_width`), so a session
    named in Japanese or Chinese does not push the rest of its row out of line.
    """
    headers = [as_printed(printable(h)) for h in headers]
    rows = [[as_printed(printable(cell)) for cell in row] for row in rows]
    widths = [shown_width(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], shown_width(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell + " " * (widths[i] - shown_width(cell)) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def as_printed(text: str) -> str:
    """`text` as stdout will print it: with `\\uXXXX` for each character its encoding
    cannot hold (a Latin-1 locale; `cli.output.tolerate_any_text`).

    A table measures its cells in this form: measured as `日本` (4 columns) and
    printed as `\\u65e5\\u672c` (12), a session's name pushed the rest of its row
    out of line. UTF-8, and ASCII (which click writes UTF-8 to), print the text.
    """
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return text
    if name in ("utf-8", "ascii") or text.isascii():
        return text
    return text.encode(name, "backslashreplace").decode(name)


def shown_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and full-width characters two,
    combining marks none, every other character one."""
    import unicodedata

    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`key:  value` lines with the values aligned; multi-line values are indented.

    Only a newline starts another line (a value may be indented JSON); every
    other control character shows escaped.
    """
    pairs = [(printable(key), value) for key, value in pairs]
    width = max((len(key) for key, _ in pairs), default=0) + 1
    lines = []
    for key, value in pairs:
        first, *rest = [printable(line) for line in value.removesuffix("\n").split("\n")]
        lines.append(f"{key + ':':<{width}}  {first}".rstrip())
        lines.extend(" " * (width + 2) + line for line in rest)
    return "\n".join(lines)
