"""The shared ways a message names things: a list cut and counted."""

from __future__ import annotations

import re

import pytest

from mdivicomtools.common.text import describe_changes, printable, some, terminal_output
from mdivicomtools.model import contract
from mdivicomtools.model.contract import is_version


@pytest.mark.parametrize(
    ("items", "limit", "sep", "shown"),
    [
        ([], 3, ", ", ""),
        (["a"], 3, ", ", "a"),
        (["a", "b", "c"], 3, ", ", "a, b, c"),
        (["a", "b", "c", "d", "e"], 3, ", ", "a, b, c and 2 more"),
        (["x", "y"], 1, "; ", "x and 1 more"),
        (["x", "y", "z"], 2, "; ", "x; y and 1 more"),
    ],
)
def test_some_names_at_most_the_limit_and_counts_the_rest(items, limit, sep, shown):
    assert some(items, limit, sep) == shown


def test_describe_changes_cuts_each_kind_on_its_own():
    said = describe_changes(["a", "b", "c"], [], ["r"], 2)
    assert said == "changed a, b and 1 more; removed r"


@pytest.mark.parametrize(
    "text",
    ["plain ascii", "grüße, 日本語, emoji 🎥", "a\u00a0b", "", "soft\u00adhyphen"],
)
def test_printable_returns_text_without_control_characters_unchanged(text):
    """Text `str.isprintable` accepts is returned as is, without the pattern; text it
    refuses for another reason (a no-break space, a soft hyphen) is not escaped either."""
    assert printable(text) == text


def test_printable_still_writes_out_what_is_not_printable():
    assert printable("a\nb\x1b[2J\u202e\udcff") == r"a\nb\x1b[2J\u202e\xff"
    assert terminal_output("bar\r50%\x1b]0;x\x07\n") == "bar\r50%\\x1b]0;x\\x07\n"


@pytest.mark.parametrize(
    ("version", "ordered"),
    [
        ("1.0.3", True),
        ("2024.11", True),
        ("01.2", True),  # PEP 440 takes leading zeros
        ("7", True),
        ("1.0.0-rc.1+build.5", True),  # SemVer only
        ("1.0.post1.dev2", True),  # PEP 440 only
        ("V1.0RC1", True),  # PEP 440 is case-blind
        ("1.", False),
        ("1..2", False),
        ("latest", False),
        ("1.0\n", False),
        ("\u0661.\u0662", False),  # Arabic-Indic digits: neither scheme's
    ],
)
def test_is_version_takes_dotted_numbers_on_the_short_path_and_the_rest_on_the_full(
    version, ordered
):
    assert is_version(version) is ordered
    # the short path answers only what both full patterns would
    if contract._PLAIN_VERSION_RE.match(version):
        assert re.match(contract._PEP440, version)
