"""Extension points (pluggy): the hook specs, the manager that loads hook modules,
and the core's own behaviour written as hook implementations.

`markers` (hookimpl, hookspec; costs only pluggy to import), `specs` (every
hook with an example), `manager` (loading, isolated calls, the backend
registry), `builtin/` (validation, host, inventory, result bundles, the python
backend). May import `common`, `model`, `records`, `bundles` and `execution`;
never the runner, which calls the hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from mdivicomtools.hooks.manager import HookManager


def __getattr__(name: str) -> Callable[..., HookManager]:
    """`mdivicomtools.hooks.load_hooks`, as the first releases' docs imported it to pass
    hooks to `run_plugin`; it lives in `mdivicomtools.hooks.manager` since the
    package was split by job, and a lab's script written then stopped on an
    ImportError. Loaded on first use, so `hookimpl` still costs only pluggy."""
    if name != "load_hooks":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn(
        "mdivicomtools.hooks.load_hooks is mdivicomtools.hooks.manager.load_hooks now; "
        "import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    from mdivicomtools.hooks.manager import load_hooks

    return load_hooks
