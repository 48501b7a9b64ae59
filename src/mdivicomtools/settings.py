"""The user's own defaults, in the platform's config folder.

`~/.config/mdivicomtools/config.toml` on Linux (platformdirs decides the folder
elsewhere; MDIVICOM_CONFIG_FILE names another file). Operators use it to make
Podman the default where Docker is not allowed, without wrapping every call:

    backend = "podman"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mdivicomtools.errors import UsageError

CONFIG_FILE_ENV = "MDIVICOM_CONFIG_FILE"


def config_file() -> Path:
    override = os.environ.get(CONFIG_FILE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # 25 ms of every run, unless MDIVICOM_CONFIG_FILE is set

    return platformdirs.user_config_path("mdivicomtools") / "config.toml"


def load_user_config() -> dict[str, Any]:
    """The user config as a dict; a missing file is an empty config."""
    path = config_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read the user config {str(path)!r}: {exc.strerror}") from None
    from mdivicomtools.common import tomlio  # 25 ms, only when the file exists

    try:
        return tomlio.loads(text)
    except tomlio.TOMLDecodeError as exc:
        raise UsageError(f"the user config {str(path)!r} is not valid TOML: {exc}") from None


def configured_backend() -> str | None:
    value = load_user_config().get("backend")
    if value is not None and not isinstance(value, str):
        raise UsageError(f"'backend' in {str(config_file())!r} must be a string such as \"podman\"")
    return value


def configured_strict_bundles() -> bool:
    """`strict_bundles = true` makes every run fail on an invalid result bundle."""
    value = load_user_config().get("strict_bundles", False)
    if not isinstance(value, bool):
        raise UsageError(f"'strict_bundles' in {str(config_file())!r} must be true or false")
    return value


def configured_strict_hooks() -> bool:
    """`strict_hooks = true` refuses to run while an installed hook module is broken.

    A site's provenance or validation hook that stopped loading would otherwise
    only warn; sites that depend on their hooks make that an error.
    """
    value = load_user_config().get("strict_hooks", False)
    if not isinstance(value, bool):
        raise UsageError(f"'strict_hooks' in {str(config_file())!r} must be true or false")
    return value
