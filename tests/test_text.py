"""The shared ways a message names things: a list cut and counted."""

from __future__ import annotations

import pytest

from mdivicomtools.common.text import describe_changes, some


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
