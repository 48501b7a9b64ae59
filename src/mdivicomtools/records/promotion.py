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
from pathlib import Path

from mdivicomtools.model.layout import PROMOTING

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
