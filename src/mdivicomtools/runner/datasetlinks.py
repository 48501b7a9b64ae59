"""Symbolic links in a dataset that a container cannot follow.

A container sees the dataset folder alone, mounted at /mdivicom/dataset: a
link to an absolute host path, or one that climbs out of that folder (a
datalad or git-annex dataset given by one of its session folders, whose files
are links into `.git/annex/objects` above it), leads nowhere inside, while the
host, and the dataset digest, follow it. The run says so before it starts
instead of letting the tool read a missing file.
"""

from __future__ import annotations

import os
from pathlib import Path

from mdivicomtools.common.text import some
from mdivicomtools.runner.fingerprint import Fingerprint

#: links named in the warning; the rest are counted
NAMED = 3


def unreachable_links(root: Path, before: Fingerprint) -> list[tuple[str, str]]:
    """(relative path, target) of each link under `root` that leads to an existing
    file or folder on the host but not inside a mount of `root` alone.

    Taken from the fingerprint's link entries, so the dataset is not walked again;
    a link dangling on the host too is left out (it dangles in the container alike:
    a git-annex file whose content is not fetched).
    """
    top = root.resolve()
    found = []
    for rel, entry in sorted(before.items()):
        if entry[0] != "l":
            continue
        path = root / rel
        try:
            target = os.readlink(path)
            if not path.exists():
                continue
            inside = path.resolve().is_relative_to(top)
        except (OSError, RuntimeError):  # an escaped name, a loop: nothing to say
            continue
        if os.path.isabs(target) or not inside:
            found.append((rel, target))
    return found


def unreachable_links_note(root: Path, before: Fingerprint) -> str | None:
    """The run's warning about `unreachable_links`, or None when there are none."""
    links = unreachable_links(root, before)
    if not links:
        return None
    named = some([f"{rel!r} -> {target!r}" for rel, target in links], NAMED)
    return (
        f"the dataset has {len(links)} symbolic link(s) the container cannot follow: "
        f"{named}; only --dataset is mounted, so a link to an absolute path or out "
        "of that folder leads nowhere inside; give the folder that holds their targets "
        "as --dataset (a datalad or git-annex dataset's top folder), or a copy made with "
        "`cp -rL`"
    )
