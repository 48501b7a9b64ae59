"""The one walk of a run's dataset before its plugin starts.

Four things need the dataset's entries before a run: the read-only check
(`fingerprint`, compared after the plugin), the warning about links a
container cannot follow, the check that --hash-dataset can open every file,
and the dataset's fingerprint, digest and per-file manifest for the record
(with the result bundles it holds). Each walked the dataset on its own: three
walks of 100,000 files before every run, four with --hash-dataset. One walk
gives all of them what they need, and the record says what it said. Only the
check after the plugin walks again: it is there to see what the plugin did.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from mdivicomtools.records.digest import DatasetEntry, dataset_entry
from mdivicomtools.runner.fingerprint import Fingerprint, fingerprint


class DatasetWalk(msgspec.Struct, kw_only=True):
    """What one walk of the dataset found: every entry's stat for the read-only check,
    and the files as the digest lists them (sorted by relative path)."""

    fingerprint: Fingerprint
    files: list[DatasetEntry]


def walk_dataset(root: Path) -> DatasetWalk:
    """One walk of root for everything a run needs before its plugin starts; raises
    OSError (PermissionError for an unreadable folder) when it cannot be read."""
    files: list[DatasetEntry] = []
    top = str(root)  # the text the walk's paths start with, as in `fingerprint`

    def visit(entry: os.DirEntry[str], rel: str) -> None:
        item = dataset_entry(entry, rel, top)
        if item is not None:
            files.append(item)

    found = fingerprint(root, visit)
    files.sort(key=lambda e: e.rel)
    return DatasetWalk(fingerprint=found, files=files)
