"""A cheap fingerprint of a folder tree, to prove a plugin left the dataset alone.

Python plugins run in our process, so nothing stops them from writing into the
dataset. Container plugins get it mounted read-only, but that protects the
mount, not the files: a hard link to a dataset file in a read-write mount (the
work folder), or anything else on the host, can still change them. So every
run, whatever its backend, is checked the same way. Comparing each entry's
type, size, modification time, status-change time (ctime) and inode before
and after catches it without reading file contents. ctime cannot be set back
from user space (`os.utime` sets only atime and mtime, and itself moves
ctime), so a rewrite in place that keeps the size and restores the mtime is
still caught; the inode catches a file replaced by a rename. What it does
not catch: a change undone completely between the two scans by someone able
to set the clock, and reads (the check is about writes). A change is
detected, not undone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISDIR, S_ISLNK

import msgspec

from mdivicomtools.common.safefs import display_name
from mdivicomtools.common.text import describe_changes

#: relative path -> (kind, size, mtime_ns, ctime_ns, inode); kind "f" for files, "l"
#: links, "d" folders, whose entry is ("d", 0, 0, mode, inode): a folder's times move
#: with every entry added or removed, which the path sets already report, while a
#: chmod of it is a change of its own. The tree's root is listed as ROOT. Names
#: that are not UTF-8 are in the escaped form of display_name
Stat = tuple[str, int, int, int, int]
ROOT = "./"
Fingerprint = dict[str, Stat]


class TreeChanges(msgspec.Struct, frozen=True):
    changed: list[str]
    added: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self, limit: int = 10) -> str:
        return describe_changes(self.changed, self.added, self.removed, limit)


def _entries(
    root: Path, visit: Callable[[os.DirEntry[str], str], None] | None = None
) -> Iterator[tuple[str, Stat]]:
    """(relative path, Stat) of root (as ROOT) and every entry under it, never
    following a link; `visit(entry, rel)` is called for each that is no folder."""
    top = root.stat()
    yield ROOT, ("d", 0, 0, top.st_mode, top.st_ino)
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + display_name(entry.name)[0]
                stat = entry.stat(follow_symlinks=False)
                mode = stat.st_mode
                if S_ISDIR(mode):
                    stack.append((entry.path, rel + "/"))
                    yield rel + "/", ("d", 0, 0, mode, stat.st_ino)
                    continue
                if visit is not None:
                    visit(entry, rel)
                kind = "l" if S_ISLNK(mode) else "f"
                yield rel, (kind, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def fingerprint(
    root: Path, visit: Callable[[os.DirEntry[str], str], None] | None = None
) -> Fingerprint:
    """Every entry under root with what `same_entry` compares; raises OSError
    (PermissionError for an unreadable folder) when the tree cannot be read.

    `visit(entry, rel)` is called for each entry that is not a folder, in the
    same walk: the run's walk of its dataset gathers what the digest needs
    there (`runner.datasetwalk`) instead of walking it again.
    """
    return dict(_entries(root, visit))


def changes_since(before: Fingerprint, root: Path) -> TreeChanges:
    """`compare(before, fingerprint(root))`, without holding the second fingerprint.

    The check after a run compares each entry as the walk meets it: a second
    dict of 100,000 dataset files beside the first cost the run 40 MiB, to
    find, nearly always, that nothing changed. Raises OSError as `fingerprint`.
    """
    left = dict(before)  # what the walk has not met yet: at the end, what was removed
    changed: list[str] = []
    added: list[str] = []
    for rel, stat in _entries(root):
        old = left.pop(rel, None)
        if old is None:
            added.append(rel)
        elif not same_entry(old, stat):
            changed.append(rel)
    return TreeChanges(changed=sorted(changed), added=sorted(added), removed=sorted(left))


def same_entry(before: Stat, after: Stat) -> bool:
    """The one comparison of the dataset check: type, size, mtime, ctime and inode.

    Folders compare type, mode and inode: their times move whenever an entry is
    added or removed, which the path sets already report.
    """
    return before == after


def compare(before: Fingerprint, after: Fingerprint) -> TreeChanges:
    return TreeChanges(
        changed=sorted(
            p for p in before.keys() & after.keys() if not same_entry(before[p], after[p])
        ),
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
    )
