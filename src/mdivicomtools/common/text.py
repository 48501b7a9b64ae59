"""One-line messages: what a table cell, a record's error or a log line can hold."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: longer reasons are cut; a broken plugin's traceback text must not flood a table
LINE_LIMIT = 400


def one_line(text: str, limit: int = LINE_LIMIT) -> str:
    """Collapse whitespace (tracebacks, engine answers) and cut at `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: C0 and C1 control characters, DEL, the Unicode line and paragraph separators, and
#: the bidirectional marks, embeddings, overrides and isolates, which make a terminal
#: show text in another order than it holds (U+202E turns `exe.txt` into `txt.exe`), and
#: the surrogate escapes of a name from the disk that is not UTF-8 (a terminal cannot
#: show them; writing one to a UTF-8 stream raises). Every one of them is outside what
#: `str.isprintable` accepts, so printable text never needs the pattern, which `re`
#: compiles on first use (a millisecond: a character class this wide is slow to build)
_CONTROL = (
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\udc80-\udcff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: the same, less the newline, carriage return and tab that lay out a program's
#: output (its lines, a progress bar redrawn with `\r`, a table)
_CONTROL_IN_OUTPUT = (
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f"
    "\u202a-\u202e\u2066-\u2069\udc80-\udcff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    if "\udc80" <= char <= "\udcff":  # the byte the name held: as `display_name` writes it
        return f"\\x{ord(char) - 0xDC00:02x}"
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


#: a run of surrogate escapes: the bytes of a name Python could not decode
_ESCAPED_BYTES = "[\udc80-\udcff]+"


def _as_utf8(match: re.Match[str]) -> str:
    raw = bytes(ord(char) - 0xDC00 for char in match.group())
    return raw.decode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """`text` with every control character written out (`\\n`, `\\r`, `\\x1b`).

    Record text (a plugin's error, a file name) is written by code we do not
    control: a newline would forge rows of a table, a carriage return or an
    escape sequence would rewrite what the terminal shows. Escaped, such text
    stays on its own line and shows what it holds; text without control
    characters is returned unchanged.
    """
    if text.isprintable():
        return text
    if re.search(_ESCAPED_BYTES, text):
        # under the C locale with PYTHONUTF8=0 every non-ASCII name is escaped bytes:
        # those that are UTF-8 show as the characters they are, as in a UTF-8 locale
        # (`ses-ü`, not `ses-\\xc3\\xbc`); the others stay bytes, written `\\xNN`
        text = re.sub(_ESCAPED_BYTES, _as_utf8, text)
    return re.sub(_CONTROL, _escape, text)


def terminal_output(text: str) -> str:
    """A program's output as the terminal may be shown it: laid out as it was
    printed (newlines, `\r` redraws, tabs), every other control character
    written out as `printable` writes it (`\x1b`, `\x07`, `\u202e`).

    A plugin's output is echoed live to the user's terminal, and an escape
    sequence in it would act there: set the window title (`ESC ]0;`), clear
    the screen (`ESC [2J`), write the clipboard (`ESC ]52;`), hide a link
    behind text (`ESC ]8;`) or ring the bell, on behalf of code the user did
    not write. With its ESC written out, the sequence shows as text; the run
    log keeps the bytes as printed.
    """
    return re.sub(_CONTROL_IN_OUTPUT, _escape, text)


def a_type(value: object) -> str:
    """`a str`, `an int`, `an object`: the type of `value` with its article, for
    messages that say what a plugin or a hook gave where something else belongs.
    A class name keeps `a` (`a One`, `a UserList`): it is read as a name."""
    name = type(value).__name__
    return ("an " if name[:1] in ("a", "e", "i", "o", "u") else "a ") + name


def exception_text(exc: BaseException) -> str:
    """`str(exc)`, or a note when the exception's own `__str__` raises.

    The exception is a plugin's or a hook's, and its class is theirs: a
    `__str__` that reads an attribute never set raised again while its
    failure was being described, and took the describing code down with it.
    """
    try:
        return str(exc)
    except Exception as broken:
        return f"(its message could not be read: its __str__ raised {type(broken).__name__})"


def os_reason(exc: BaseException, named: object = None) -> str:
    """Why a file could not be read or written, as a message says it: `Permission
    denied`, and the file only when it is not `named` (the one the message names).

    `str(OSError)` is `[Errno 13] Permission denied: 'o/_runs/x.json'`: Python's
    errno and, in a message that named the file already, the file again. Any
    other exception (a decode error, a refused symlink) keeps its own text.
    """
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    filename = exc.filename
    if filename is None or (named is not None and str(filename) == str(named)):
        return exc.strerror
    return f"{exc.strerror}: {str(filename)!r}"


def describe_exception(exc: BaseException) -> str:
    """`Type: message` on one line, or just the type when the message is empty."""
    message = one_line(exception_text(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def some(items: Sequence[str], limit: int, sep: str = ", ") -> str:
    """`a, b and 3 more`: at most `limit` of `items`, and how many are left out.

    A message must stay one readable line however many files, threads or links
    it is about; every such list is cut and counted the same way.
    """
    shown = sep.join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def named_options(names: Sequence[str]) -> str:
    """`--a`, `--a and --b`, `--a, --b and --c`: the options a user gave, as a message's
    subject (its verb is singular for one: `named_options(given) + needs(given)`)."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def describe_changes(changed: list[str], added: list[str], removed: list[str], limit: int) -> str:
    """`changed a, b and 3 more; removed c`: the paths a check found different.

    A tree-comparison message must stay one readable line however many files
    differ, so each kind names at most `limit` paths and counts the rest.
    """
    parts = []
    for label, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            parts.append(f"{label} {some(paths, limit)}")
    return "; ".join(parts)


def close_matches(word: str, choices: Sequence[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """`difflib.get_close_matches`, for the "did you mean" of a message: difflib is
    imported here, on the error path, so that no command's start-up pays for it
    (it had crept back into module imports, 1-2 ms of every `mdivicom` process)."""
    import difflib

    return difflib.get_close_matches(word, choices, n, cutoff)


#: msgspec's validation message: `Expected `int`, got `str` - at `$.a.b``
_SCHEMA_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_SCHEMA_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_SCHEMA_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_SCHEMA_EXPECTED = re.compile(
    r"^Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)$"
)
#: msgspec's type names as a JSON or TOML reader says them
_SCHEMA_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
    "bytes": "a base64 string",
    "datetime": "an RFC 3339 date and time",
}


def _schema_type(names: str) -> str:
    """`bool | null` -> `true or false`: an optional field's null is no advice."""
    parts = [part.strip() for part in names.split("|")]
    named = [_SCHEMA_TYPES.get(part, part) for part in parts if part != "null" or len(parts) == 1]
    return " or ".join(named)


def schema_problem(message: str) -> tuple[str, str]:
    """msgspec's validation message as (`field`, `problem`) in the words of the file.

    msgspec says `Expected `bool | null`, got `str` - at `$.strict_bundles``:
    Python type names in backticks and a JSON path, which a user config, a
    manifest or a record reader showed as they were. The field is dotted
    (`container.memory`, `c[0]`, empty for the document itself) and the
    problem reads `expected true or false, got a string`, `is missing
    (required)` or `is not a known field`.
    """
    match = _SCHEMA_AT.match(message)
    assert match is not None  # the pattern matches any string
    text, path = match.group("msg"), (match.group("path") or "").lstrip(".")
    for pattern, problem in (
        (_SCHEMA_MISSING, "is missing (required)"),
        (_SCHEMA_UNKNOWN, "is not a known field"),
    ):
        found = pattern.match(text)
        if found:
            field = found.group("field")
            return (f"{path}.{field}" if path else field), problem
    expected = _SCHEMA_EXPECTED.match(text)
    if expected:
        got = expected.group("got")
        text = f"expected {_schema_type(expected.group('want'))}{expected.group('rest')}"
        if got:
            text += f", got {_schema_type(got)}"
    elif text:
        text = text[0].lower() + text[1:]
    return path, text


def schema_text(message: str) -> str:
    """`field: problem` (or `field is missing (required)`) from msgspec's message."""
    field, problem = schema_problem(message)
    if problem.startswith("is "):
        return f"{field} {problem}"
    return f"{field}: {problem}" if field else problem
