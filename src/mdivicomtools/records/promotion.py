"""Which plugin's output a run's staging folder was promoting, read from the folder.

A run writes `.promoting` (the plugin id) into its staging folder before it
moves the output in place, and the one there aside as `.previous-<id>`, so that
a promotion its runner did not live to commit is undone. Releases before that
marker made the same two moves without one: their runner, killed between them,
left the only copy of the previous output in its staging folder and no
`<out>/<id>/`, and `runs clean` or the next run removed it with the folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mdivicomtools.model.layout import PROMOTING, STAGING_DIR

#: the previous output of a promotion, inside the promoting run's staging folder
PREVIOUS = ".previous-"


def previous_output(staging: Path, plugin_id: str) -> Path:
    return staging / f"{PREVIOUS}{plugin_id}"


def promoting(staging: Path) -> str | None:
    """The plugin whose output the run of `staging` (`_staging/<run_id>/`) was promoting.

    Its marker's id ("" for a marker never written whole), else, for an older
    release's run, the id of a previous output left there while `<out>/<id>/`
    is gone; None when neither. Raises OSError other than FileNotFoundError
    when the folder cannot be read (another user's, private).
    """
    try:
        return (staging / PROMOTING).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    run_out_dir = staging.parent.parent
    try:
        names = sorted(os.listdir(staging))
    except FileNotFoundError:
        return None
    for name in names:
        plugin_id = name[len(PREVIOUS) :]
        if not name.startswith(PREVIOUS) or not plugin_id or plugin_id.startswith((".", "_")):
            continue  # not what a promotion names (plugin ids start with a letter or digit)
        # an older release's rename was cut short: the previous output is all there is
        if not os.path.lexists(run_out_dir / plugin_id):
            return plugin_id
    return None


def foreign_staging(folder: Path) -> str | None:
    """Why `folder` (`_staging/` or a run's `_staging/<run_id>/`) is not what a runner of
    this user made, or None when it is.

    A runner makes `_staging/` a real folder and each run's folder in it private to
    its user (0700). A symbolic link there, or a run folder of another user or one
    others may write to, was put there by someone else (a colleague sharing --out
    can make both): a dead run's promotion "undone" from it moved this user's output
    into a folder they chose, and removing it removed whatever it leads to.
    """
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return f"it is a symbolic link to {os.readlink(folder)!r}"
    if folder.name == STAGING_DIR:
        return None  # shared by the users of --out: any owner, group-writable
    if info.st_uid != os.geteuid():
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others may write into it (mode {stat.S_IMODE(info.st_mode):o})"
    return None
