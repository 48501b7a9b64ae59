"""mdivicomtools: discover and run analysis plugins over multimodal recordings.

The public API is imported lazily so that `import mdivicomtools` (and therefore
the `mdivicom` command's start-up) stays cheap; each name pulls in its module on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdivicomtools._version import __version__

if TYPE_CHECKING:
    from mdivicomtools.discovery import discover, resolve
    from mdivicomtools.markers import hookimpl
    from mdivicomtools.runner import run_plugin

__all__ = ["__version__", "discover", "hookimpl", "resolve", "run_plugin"]

_LAZY = {
    "discover": "mdivicomtools.discovery",
    "resolve": "mdivicomtools.discovery",
    "hookimpl": "mdivicomtools.markers",
    "run_plugin": "mdivicomtools.runner",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mdivicomtools' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
