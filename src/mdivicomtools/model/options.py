"""What a user asks of a run, decided once and passed whole.

The CLI and the Python API each build one frozen RunOptions (and for
`--sessions` one BatchOptions) and hand it down unchanged: the runner, the
batch planner and every session worker read the same object, so an option is
spelled out in one place and cannot be forgotten on the way to a worker.
"""

from __future__ import annotations

import functools
import numbers
import types
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from mdivicomtools.common.jsonio import MAX_DEPTH
from mdivicomtools.errors import given_path

ExecutorName = Literal["local", "dask", "slurm"]
EXECUTORS: tuple[str, ...] = ("local", "dask", "slurm")


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
    #: record the dataset's content digest; None: as `hash_dataset` in the user config says
    hash_dataset: bool | None = None
    #: run this image (an image id) instead of the plugin's; `rerun` pins the recorded one
    image: str | None = None
    #: the reference the record names as `container.image` when `image` pins another:
    #: `rerun` passes the original's (an image id is no reference); None: the manifest's
    image_name: str | None = None
    #: the run this one repeats (`mdivicom rerun`), linked from the new record
    rerun_of: str | None = None

    #: container limits that override the manifest and the user config ("2g", 1.5, "all")
    memory: str | None = None
    cpus: float | None = None
    shm_size: str | None = None
    gpus: str | None = None
    #: `--mount NAME=PATH`: host folders for the plugin's declared named mounts
    mounts: tuple[str, ...] = ()
    stop_grace: float | None = None
    # which try of a batch session this run is (`--retries`); 1 outside batches
    attempt: int = 1
    #: None means as `strict_hooks` in the user config says (default off)
    strict_hooks: bool | None = None

    def __post_init__(self) -> None:
        """Store plain values whatever callers pass (paths, lists), and refuse wrong
        types here rather than deep inside a run (msgspec checks types only when
        decoding, not in the constructor)."""
        for name in ("dataset", "out", "work"):
            value = getattr(self, name)
            if isinstance(value, Path):
                msgspec.structs.force_setattr(self, name, str(value))
            elif value is not None and not isinstance(value, str):
                raise TypeError(f"RunOptions.{name} must be a path or a string, got {value!r}")
            elif value is not None:
                given_path(value, name)
        for name in ("sets", "mounts"):
            if isinstance(getattr(self, name), str):  # would be taken a character at a time
                raise TypeError(
                    f"RunOptions.{name} must be a list of KEY=VALUE strings, got the string "
                    f"{getattr(self, name)!r}; write {name}=[{getattr(self, name)!r}]"
                )
            if isinstance(getattr(self, name), dict):  # its keys alone were taken
                raise TypeError(_dict_for_list(name, getattr(self, name)))
            if not isinstance(getattr(self, name), tuple):
                msgspec.structs.force_setattr(self, name, tuple(getattr(self, name) or ()))
            _check_items(self, name)
        if isinstance(self.config, Path):  # the --config file
            msgspec.structs.force_setattr(self, "config", str(self.config))
        elif self.config is not None and not isinstance(self.config, (dict, str)):
            raise TypeError(
                "RunOptions.config must be a dict, the --config text or a path to a "
                f".json/.toml file, got {self.config!r}"
            )
        elif isinstance(self.config, dict):
            msgspec.structs.force_setattr(self, "config", _plain_config(self.config))
        _store_plain_numbers(self, _RUN_NUMBERS)
        _check_flags_and_names(self)

    @classmethod
    def build(cls, **fields: Any) -> RunOptions:
        """The keyword form the API and the CLI use; the same as calling the class."""
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
    # rerun a session that failed (its worker lost included) up to this many times
    retries: int = 0
    # --executor slurm: None means as the user config's [slurm] section says
    slurm_partition: str | None = None
    slurm_time: str | None = None
    slurm_mem: str | None = None
    slurm_cpus: int | None = None
    slurm_account: str | None = None
    slurm_directives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse wrong types here, as RunOptions does: a list of sessions failed deep in
        the planner with `expected str ... not list`, and `jobs=np.int64(4)` ran every
        session and then lost the batch's summary to msgspec's `Encoding objects of
        type numpy.int64 is unsupported`."""
        if not isinstance(self.sessions, str):
            raise TypeError(
                "BatchOptions.sessions must be one shell-style pattern of session folder "
                f"names (such as 'ses-*' or 'ses-0[1-4]'), got {self.sessions!r}"
            )
        if isinstance(self.slurm_directives, str):  # would be taken a character at a time
            raise TypeError(
                "BatchOptions.slurm_directives must be a list of strings, got the string "
                f"{self.slurm_directives!r}; write slurm_directives=[{self.slurm_directives!r}]"
            )
        if not isinstance(self.slurm_directives, tuple):
            msgspec.structs.force_setattr(
                self, "slurm_directives", tuple(self.slurm_directives or ())
            )
        _check_items(self, "slurm_directives")
        _store_plain_numbers(self, _BATCH_NUMBERS)
        _check_flags_and_names(self)


#: the numeric fields of each options Struct: the type stored, and what the value counts
_RUN_NUMBERS: dict[str, tuple[type[int] | type[float], str]] = {
    "timeout": (float, "a number of seconds"),
    "cpus": (float, "a number of CPUs"),
    "stop_grace": (float, "a number of seconds"),
    "attempt": (int, "a whole number"),
}
_BATCH_NUMBERS: dict[str, tuple[type[int] | type[float], str]] = {
    "jobs": (int, "a whole number of sessions at a time"),
    "retries": (int, "a whole number of tries"),
    "slurm_cpus": (int, "a whole number of CPUs"),
}


def _store_plain_numbers(
    options: msgspec.Struct, fields: dict[str, tuple[type[int] | type[float], str]]
) -> None:
    """Store each numeric option as a plain int or float, and refuse what is no number.

    A notebook's numbers are often numpy's (`np.int64(4)`, a value read from a
    DataFrame): they compare and add like Python's, so a run got far (its
    `running` record written, every session of a batch run) before msgspec
    refused to encode one into a record or summary, leaving the run
    `abandoned` or the batch without its summary. A string or a bool is refused
    here, rather than failing as `'<' not supported` deep inside.
    """
    owner = type(options).__name__
    for name, (kind, meaning) in fields.items():
        value = getattr(options, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{owner}.{name} must be {meaning}, got {value!r}")
        number = float(value)
        plain: int | float = number
        if kind is int:
            if isinstance(value, numbers.Integral):
                plain = int(value)
            elif number.is_integer():  # 2.0 sessions at a time
                plain = int(number)
            else:
                raise TypeError(f"{owner}.{name} must be {meaning}, got {value!r}")
        msgspec.structs.force_setattr(options, name, plain)


def _plain_config(value: Any, depth: int = 0) -> Any:
    """`value` (a config given as a dict) with numpy's numbers and booleans as Python's.

    A notebook's config often comes from a DataFrame (`{"max_lag_s": df.lag[0]}`):
    its `np.float64(5.0)` was refused as `config.max_lag_s is a float64, not a
    JSON value`, though it is a plain number to the caller. Anything else is left
    as it is, for the JSON-safety check to name (a tuple, a set, NaN). The dicts
    and lists are copies, so the caller changing theirs later changes no option.
    Past the nesting JSON-safety allows (a dict that holds itself) it stops, and
    that check names the depth.
    """
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: _plain_config(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_config(item, depth + 1) for item in value]
    if type(value).__module__ == "numpy" and (
        isinstance(value, numbers.Number) or type(value).__name__ in ("bool", "bool_")
    ):
        return value.item()
    return value


@functools.cache
def _plain_fields(kind: type[msgspec.Struct]) -> tuple[list[str], list[str]]:
    """The fields of `kind` typed `bool` (or `bool | None`) and `str` (or `str | None`),
    read from its annotations so that a field added later is checked too."""
    flags: list[str] = []
    names: list[str] = []
    for field in msgspec.structs.fields(kind):
        allowed = (
            set(field.type.__args__) if isinstance(field.type, types.UnionType) else {field.type}
        )
        allowed.discard(type(None))
        if allowed == {bool}:
            flags.append(field.name)
        elif allowed == {str}:
            names.append(field.name)
    return flags, names


def _check_flags_and_names(options: msgspec.Struct) -> None:
    """Refuse what is neither True nor False for a flag, and what is no string for a name.

    msgspec checks types only when decoding, so `isolate="no"` was taken as true
    (the run isolated), `dry_run="yes"` ran a dry run, and `backend=3` was looked
    up as a backend named 3 (`backend 3 is not installed`). numpy's booleans (a
    value read from a DataFrame) are stored as Python's, which a record can hold.
    """
    owner = type(options).__name__
    flags, names = _plain_fields(type(options))
    for name in flags:
        value = getattr(options, name)
        if value is None or isinstance(value, bool):
            continue
        if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):
            msgspec.structs.force_setattr(options, name, bool(value))
            continue
        raise TypeError(f"{owner}.{name} must be True or False, got {value!r}")
    for name in names:
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            example = _EXAMPLES.get(name, "")
            raise TypeError(f"{owner}.{name} must be a string{example}, got {value!r}")


#: what a string option looks like, for the message that refuses another type
_EXAMPLES = {
    "backend": " naming a backend ('python', 'docker' or 'podman')",
    "memory": " such as '2g'",
    "shm_size": " such as '1g'",
    "gpus": " such as 'all' or '0,1'",
    "slurm_mem": " such as '4G'",
    "slurm_time": " such as '01:00:00'",
}


def _dict_for_list(name: str, given: dict[Any, Any]) -> str:
    """The TypeError's message for `sets` or `mounts` given as a dict.

    `mounts={"models": "/srv/models"}` was taken as its keys, `('models',)`: the
    folder was dropped without a word and the run refused `'models': expected
    NAME=PATH`; `sets={"max_lag_s": 5}` likewise lost its value.
    """
    import json  # only for this mistake: not at every command's start

    form = "KEY=VALUE" if name == "sets" else "NAME=PATH"
    items = [
        f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
        for key, value in given.items()
    ]
    return f"RunOptions.{name} must be a list of {form} strings, got a dict; write {name}={items!r}"


def _check_items(options: msgspec.Struct, name: str) -> None:
    """Refuse a list of strings (`sets`, `mounts`, `slurm_directives`) holding
    something else, which failed deep inside a run or a batch instead."""
    for item in getattr(options, name):
        if not isinstance(item, str):
            raise TypeError(
                f"{type(options).__name__}.{name} must be a list of strings, got {item!r} in it"
            )


_Options = TypeVar("_Options", RunOptions, BatchOptions)


def given_call(
    call: str, ref: object, options: object, kind: type[_Options], keywords: str
) -> _Options | None:
    """`options` as `call` (`run_plugin`, `run_batch`) got it, when it is None or a
    `kind`; a TypeError saying what it takes otherwise.

    A plain value in its place (`run_batch(ref, options, "ses-*")`, a dict of
    options, a plugin reference that is no string) failed deep inside with
    `'str' object has no attribute 'jobs'` or `... has no attribute
    'rpartition'`.
    """
    if not isinstance(ref, str):
        raise TypeError(
            f"{call}: the plugin must be a reference such as 'sync-audio' or "
            f"'lab/sync-audio', got {ref!r}"
        )
    if options is None or isinstance(options, kind):
        return options
    raise TypeError(
        f"{call}: expected a {kind.__name__} or its fields as keywords ({keywords}), "
        f"got {options!r}"
    )
