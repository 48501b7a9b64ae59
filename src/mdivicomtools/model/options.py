"""What a user asks of a run, decided once and passed whole.

The CLI and the Python API each build one frozen RunOptions (and for
`--sessions` one BatchOptions) and hand it down unchanged: the runner, the
batch planner and every session worker read the same object, so an option is
spelled out in one place and cannot be forgotten on the way to a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

ExecutorName = Literal["local", "dask"]
EXECUTORS: tuple[str, ...] = ("local", "dask")


class RunOptions(msgspec.Struct, kw_only=True, frozen=True):
    """The options of `mdivicom run` that one run (or each session of a batch) uses.

    `config` is a JSON object or the `--config` text (a JSON object or a path
    to a .json/.toml file); `sets` are `--set KEY=VALUE` assignments applied
    after it. `strict_bundles` None means: as the user config file says.
    """

    dataset: str
    out: str
    config: dict[str, Any] | str | None = None
    sets: tuple[str, ...] = ()
    work: str | None = None
    backend: str | None = None
    dry_run: bool = False
    timeout: float | None = None
    overwrite: bool = False
    isolate: bool = False
    strict_bundles: bool | None = None
    #: None means as `strict_hooks` in the user config says (default off)
    strict_hooks: bool | None = None

    @classmethod
    def build(cls, **fields: Any) -> RunOptions:
        """Accept what callers naturally pass (paths, lists) and store plain values."""
        for name in ("dataset", "out", "work"):
            if isinstance(fields.get(name), Path):
                fields[name] = str(fields[name])
        if "sets" in fields:
            fields["sets"] = tuple(fields["sets"] or ())
        return cls(**fields)

    def with_changes(self, **fields: Any) -> RunOptions:
        """A copy with some options replaced (a batch session's own folders)."""
        return RunOptions.build(**{**msgspec.structs.asdict(self), **fields})


class BatchOptions(msgspec.Struct, kw_only=True, frozen=True):
    """The options that only `--sessions` runs have."""

    sessions: str
    jobs: int | None = None
    executor: ExecutorName = "local"
    scheduler: str | None = None
    resume: bool = False
