"""mdivicomtools: discover and run analysis plugins over multimodal recordings.

The public API: `run_plugin(ref, options)` with `RunOptions`, `run_batch`
with `BatchOptions`, `verify_out` and `rerun` (docs/reproducibility.md),
`discover` and `resolve` for plugins, `hookimpl` for extenders, the
typed values hooks receive (`RunRequest`, `RunOutcome`, `RunRecord`), and
the exceptions a caller catches (`MdivicomError`, `UsageError`,
`ValidationFailed`, `RecordNotWritten`, `RunInterrupted`,
`BatchSummaryInterrupted`; docs/python-api.md lists the others).
Plugin authors also use `mdivicomtools.resultbundle` and the pytest plugin
`mdivicomtools.testing`.

Names are imported lazily so that `import mdivicomtools` (and therefore the
`mdivicom` command's start-up) stays cheap; each pulls in its module on first
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdivicomtools._version import __version__

if TYPE_CHECKING:
    from mdivicomtools.batch import run_batch
    from mdivicomtools.batch.summary import BatchSummaryInterrupted
    from mdivicomtools.discovery import discover, resolve
    from mdivicomtools.errors import MdivicomError, RecordNotWritten, UsageError
    from mdivicomtools.hooks.markers import hookimpl
    from mdivicomtools.model.options import BatchOptions, RunOptions
    from mdivicomtools.model.run import RunOutcome, RunRecord, RunRequest
    from mdivicomtools.records.verify import verify_out
    from mdivicomtools.runner import RunInterrupted, ValidationFailed, run_plugin
    from mdivicomtools.runner.rerun import rerun

_LAZY = {
    "BatchOptions": "mdivicomtools.model.options",
    "BatchSummaryInterrupted": "mdivicomtools.batch.summary",
    "MdivicomError": "mdivicomtools.errors",
    "RecordNotWritten": "mdivicomtools.errors",
    "RunInterrupted": "mdivicomtools.runner",
    "UsageError": "mdivicomtools.errors",
    "ValidationFailed": "mdivicomtools.runner",
    "RunOptions": "mdivicomtools.model.options",
    "RunOutcome": "mdivicomtools.model.run",
    "RunRecord": "mdivicomtools.model.run",
    "RunRequest": "mdivicomtools.model.run",
    "discover": "mdivicomtools.discovery",
    "hookimpl": "mdivicomtools.hooks.markers",
    "resolve": "mdivicomtools.discovery",
    "run_batch": "mdivicomtools.batch",
    "run_plugin": "mdivicomtools.runner",
    "rerun": "mdivicomtools.runner.rerun",
    "verify_out": "mdivicomtools.records.verify",
}

__all__ = [
    "BatchOptions",
    "BatchSummaryInterrupted",
    "MdivicomError",
    "RecordNotWritten",
    "RunInterrupted",
    "RunOptions",
    "RunOutcome",
    "RunRecord",
    "RunRequest",
    "UsageError",
    "ValidationFailed",
    "__version__",
    "discover",
    "hookimpl",
    "rerun",
    "resolve",
    "run_batch",
    "run_plugin",
    "verify_out",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mdivicomtools' has no attribute {name!r}")
    import importlib  # only on first use of a lazy name

    return getattr(importlib.import_module(module_name), name)
