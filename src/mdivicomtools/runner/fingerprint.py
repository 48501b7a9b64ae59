"""A cheap fingerprint of a folder tree, to prove a python plugin left the dataset alone.

Python plugins run in our process, so nothing stops them from writing into the
dataset; comparing paths, sizes and modification times before and after catches
it without reading file contents.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

#: relative path -> (kind, size, mtime_ns); kind "d" for folders, "f" files, "l" links
Fingerprint = dict[str, tuple[str, int, int]]


class TreeChanges(msgspec.Struct, frozen=True):
    changed: list[str]
    added: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self, limit: int = 10) -> str:
        parts = []
        for label, paths in (
            ("changed", self.changed),
            ("added", self.added),
            ("removed", self.removed),
        ):
            if paths:
                shown = ", ".join(paths[:limit])
                more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
                parts.append(f"{label} {shown}{more}")
        return "; ".join(parts)


def fingerprint(root: Path) -> Fingerprint:
    result: Fingerprint = {}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                stat = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    result[rel + "/"] = ("d", 0, 0)
                    stack.append((Path(entry.path), rel + "/"))
                else:
                    kind = "l" if entry.is_symlink() else "f"
                    result[rel] = (kind, stat.st_size, stat.st_mtime_ns)
    return result


def compare(before: Fingerprint, after: Fingerprint) -> TreeChanges:
    return TreeChanges(
        changed=sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
    )
