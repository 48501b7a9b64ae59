"""The user's home folder, which a process may not have.

A systemd service with `DynamicUser=yes`, a container started with `--user
12345` and a cron job of a service account often run with HOME unset and a
uid that /etc/passwd does not know. `Path.expanduser()` then raises
RuntimeError, and platformdirs too (`could not determine the home directory
for '~/.config'`), and every command that asked ended in `internal error`.
Here a `~` that cannot be expanded stays as written, as `os.path.expanduser`
and the shell leave it, and a per-user folder that cannot be placed is None:
there is no user config to read and no digest cache to keep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

APP = "mdivicomtools"


def expand_home(path: str | os.PathLike[str]) -> Path:
    """`path` with a leading `~` or `~user` expanded where that home is known."""
    return Path(os.path.expanduser(path))


def user_folder(kind: Literal["config", "cache"]) -> Path | None:
    """mdivicomtools' per-user config or cache folder, or None without a home folder.

    A relative answer (an older platformdirs returns `~/.config` unexpanded) is
    None too: it would be a folder below wherever the command was started.
    """
    import platformdirs  # 25 ms: only when the folder is asked for

    try:
        if kind == "config":
            path = platformdirs.user_config_path(APP)
        else:
            path = platformdirs.user_cache_path(APP)
    except RuntimeError:  # no HOME, no passwd entry and no XDG variable
        return None
    return path if path.is_absolute() else None
