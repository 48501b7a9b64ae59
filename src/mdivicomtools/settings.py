"""The user's own defaults: the config file, the environment, and where each came from.

`~/.config/mdivicomtools/config.toml` on Linux (platformdirs decides the folder
elsewhere; MDIVICOM_CONFIG_FILE names another file). Operators use it to make
Podman the default where Docker is not allowed, without wrapping every call:

    backend = "podman"

The file is read into a typed UserConfig that refuses unknown keys: a typo
such as `backnd = "podman"` silently sending runs to Docker is exactly what an
operator who set it must never get. `effective_settings` answers `mdivicom
config show`: each setting's value and its origin, as `git config
--show-origin` does.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal

import msgspec

from mdivicomtools.common.home import expand_home, user_folder
from mdivicomtools.common.text import close_matches, schema_problem
from mdivicomtools.errors import UsageError

CONFIG_FILE_ENV = "MDIVICOM_CONFIG_FILE"
BACKEND_ENV = "MDIVICOM_BACKEND"
PLUGIN_PATH_ENV = "MDIVICOM_PLUGIN_PATH"
DISABLE_HOOKS_ENV = "MDIVICOM_DISABLE_HOOKS"
SCHEDULER_ENV = "MDIVICOM_DASK_SCHEDULER"


class ContainerDefaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[container]` in the user config: site defaults for container plugins.

    They override a manifest's `resources` and `stop_grace_s` (the site knows its
    machines); `--memory` and the other run options override them in turn.
    `[container.mounts]` gives host paths for named mounts, used by every plugin
    that declares a mount of that name.
    """

    memory: str | int | None = None
    cpus: float | None = None
    shm_size: str | int | None = None
    gpus: str | int | list[str] | None = None
    stop_grace_s: float | None = None
    mounts: dict[str, str] = {}


#: the worker jobs' resources when neither `--slurm-*` nor `[slurm]` sets them
SLURM_DEFAULT_TIME = "01:00:00"
SLURM_DEFAULT_MEM = "2GB"
SLURM_DEFAULT_CPUS = 1


class SlurmDefaults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[slurm]` in the user config: the worker jobs of `--executor slurm`.

    The `--slurm-*` options override each key; `interface` is the network
    interface the Dask scheduler and workers bind to.
    """

    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus: int | None = None
    account: str | None = None
    directives: list[str] = []
    interface: str | None = None


class UserConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the user config file may set; every key is optional."""

    #: the default of `run --backend` for container plugins (auto, docker, podman, ...)
    backend: str | None = None
    #: fail every run that wrote an invalid result bundle
    strict_bundles: bool | None = None
    #: record every run's dataset content digest (`run --hash-dataset`)
    hash_dataset: bool | None = None
    #: refuse to run (exit 2) while an installed hook module is broken
    strict_hooks: bool | None = None
    #: installed hook modules to skip (MDIVICOM_DISABLE_HOOKS, when set, replaces it)
    disable_hooks: list[str] | None = None
    #: `[container]`: site defaults for container plugins (resources, named mounts)
    container: ContainerDefaults | None = None
    #: `[slurm]`: the worker jobs of `--executor slurm`
    slurm: SlurmDefaults | None = None


class UserConfigError(UsageError):
    """The user config file cannot be used as it is; nothing was run."""


def config_file() -> Path | None:
    """MDIVICOM_CONFIG_FILE, else the file in the user config folder; None for a
    process without a home folder (HOME unset, a uid /etc/passwd does not know),
    which has no user config, as one whose default file does not exist."""
    override = os.environ.get(CONFIG_FILE_ENV)
    if override:
        return expand_home(override)
    folder = user_folder("config")  # platformdirs: 25 ms, unless MDIVICOM_CONFIG_FILE is set
    return None if folder is None else folder / "config.toml"


def _explain(error: msgspec.ValidationError, path: Path) -> str:
    message = str(error)
    where = f"the user config {str(path)!r}"
    if message.startswith("Object contains unknown field"):
        key = message.split("`")[1]
        table = message.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in message else ""
        tables: dict[str, type[msgspec.Struct]] = {
            "container": ContainerDefaults,
            "slurm": SlurmDefaults,
        }
        struct = tables.get(table, UserConfig)
        known = list(struct.__struct_fields__)
        close = close_matches(key, known)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if table and key in UserConfig.__struct_fields__:
            # TOML puts every key after `[container]` into that table: the usual
            # slip is a top-level key appended at the end of the file
            hint = (
                f" ({key!r} is a top-level key: move it above the first [section] line; "
                f"every key after [{table}] belongs to [{table}])"
            )
        elif not close:
            # `memory = "16g"` at the top, or `partition` under [container]
            home = [other for other, fields in tables.items() if key in fields.__struct_fields__]
            if home and home[0] != table:
                hint = f" ({key!r} belongs in the [{home[0]}] section)"
        name = f"{table}.{key}" if table else key
        return f"unknown key {name!r} in {where}{hint}; known keys: {', '.join(known)}"
    field, problem = schema_problem(message)
    return f"{field} in {where}: {problem}" if field else f"{where}: {problem}"


#: the config read from a pipe (`MDIVICOM_CONFIG_FILE=<(...)`), by path and inode
_FROM_PIPES: dict[tuple[str, int, int], UserConfig] = {}


def load_user_config() -> UserConfig:
    """The user config; a missing default file is an empty config.

    A file named by MDIVICOM_CONFIG_FILE must exist: the variable was set on
    purpose, and ignoring it would run with settings nobody chose. A run asks
    for the config several times; a pipe (`MDIVICOM_CONFIG_FILE=<(...)`) can
    be read only once, so what it gave is kept, or every later question would
    get an empty config (a run on Docker while `config show` said podman).
    """
    path = config_file()
    if path is None:
        return UserConfig()
    try:
        pipe = _pipe_key(path)
        if pipe in _FROM_PIPES:
            return _FROM_PIPES[pipe]
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte order mark is no error
    except FileNotFoundError:
        if os.environ.get(CONFIG_FILE_ENV):
            raise UserConfigError(
                f"{CONFIG_FILE_ENV} names {str(path)!r}, which does not exist; create it or "
                f"unset {CONFIG_FILE_ENV}"
            ) from None
        return UserConfig()
    except OSError as exc:
        # the default file of a HOME this user may not enter (`sudo -u` keeps the
        # caller's HOME; a service account inherits root's): say how to go on
        raise UserConfigError(
            f"cannot read the user config {str(path)!r}: {exc.strerror}; make it readable, "
            f"or set {CONFIG_FILE_ENV} to the file to use ({CONFIG_FILE_ENV}=/dev/null for "
            "none) or HOME to this user's home folder"
        ) from None
    except UnicodeDecodeError as exc:
        raise UserConfigError(
            f"the user config {str(path)!r} is not UTF-8 text (at byte offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    from mdivicomtools.common import tomlio  # 25 ms, only when the file exists

    try:
        data = tomlio.loads(text)
    except tomlio.TOMLDecodeError as exc:
        raise UserConfigError(f"the user config {str(path)!r} is not valid TOML: {exc}") from None
    try:
        config = msgspec.convert(data, UserConfig)
    except msgspec.ValidationError as exc:
        raise UserConfigError(_explain(exc, path)) from None
    if pipe is not None:
        _FROM_PIPES[pipe] = config
    return config


def _pipe_key(path: Path) -> tuple[str, int, int] | None:
    """(path, device, inode) when `path` is a pipe or another file that is not a
    regular one, else None (a regular file is read again: it may have been edited)."""
    status = path.stat()
    if stat.S_ISREG(status.st_mode) or stat.S_ISDIR(status.st_mode):
        return None
    return str(path), status.st_dev, status.st_ino


def configured_backend() -> str | None:
    return load_user_config().backend


def configured_strict_bundles() -> bool:
    """`strict_bundles = true` makes every run fail on an invalid result bundle."""
    return bool(load_user_config().strict_bundles)


def configured_container() -> ContainerDefaults:
    """The `[container]` table of the user config (empty when there is none)."""
    return load_user_config().container or ContainerDefaults()


def configured_slurm() -> SlurmDefaults:
    """The `[slurm]` table of the user config (empty when there is none)."""
    return load_user_config().slurm or SlurmDefaults()


def configured_strict_hooks() -> bool:
    """`strict_hooks = true` refuses to run while an installed hook module is broken.

    A site's provenance or validation hook that stopped loading would otherwise
    only warn; sites that depend on their hooks make that an error.
    """
    return bool(load_user_config().strict_hooks)


def configured_disable_hooks() -> tuple[list[str], str]:
    """The hook module names to skip, and where they come from (for messages).

    MDIVICOM_DISABLE_HOOKS (comma-separated), when set and not empty, replaces
    `disable_hooks = [...]` of the user config, as the environment overrides
    the file for every other setting.
    """
    raw = os.environ.get(DISABLE_HOOKS_ENV)
    if raw:
        return [name.strip() for name in raw.split(",") if name.strip()], DISABLE_HOOKS_ENV
    names = load_user_config().disable_hooks or []
    return [name.strip() for name in names if name.strip()], "disable_hooks in the user config"


def configured_hash_dataset() -> bool:
    """`hash_dataset = true` makes every run record its dataset's content digest."""
    return bool(load_user_config().hash_dataset)


Origin = Literal["default", "user config file", "environment", "command line"]


class Setting(msgspec.Struct, kw_only=True, frozen=True):
    """One line of `mdivicom config show`."""

    name: str
    value: Any
    origin: Origin
    source: str | None = None


def effective_settings(command_line: dict[str, Any] | None = None) -> list[Setting]:
    """Every setting a run would use now, and where its value comes from.

    The precedence is the one runs apply: command line, then environment, then
    the user config file, then the default.
    """
    given = {k: v for k, v in (command_line or {}).items() if v is not None}
    path = config_file()
    user = load_user_config()
    file_origin: tuple[Origin, str] = ("user config file", str(path))
    settings: list[Setting] = []

    def add(name: str, default: Any, env: str | None, from_file: Any, flag: str | None) -> None:
        if flag is not None and name in given:
            settings.append(
                Setting(name=name, value=given[name], origin="command line", source=flag)
            )
        elif env is not None and os.environ.get(env):
            settings.append(
                Setting(name=name, value=os.environ[env], origin="environment", source=env)
            )
        elif from_file is not None:
            origin, source = file_origin
            settings.append(Setting(name=name, value=from_file, origin=origin, source=source))
        else:
            settings.append(Setting(name=name, value=default, origin="default"))

    settings.append(
        Setting(
            name="config_file",
            value=None if path is None else str(path),
            origin="environment" if os.environ.get(CONFIG_FILE_ENV) else "default",
            source=CONFIG_FILE_ENV if os.environ.get(CONFIG_FILE_ENV) else None,
        )
    )
    add("backend", "auto", BACKEND_ENV, user.backend, "--backend")
    add("strict_bundles", False, None, user.strict_bundles, "--strict-bundles")
    add("hash_dataset", False, None, user.hash_dataset, "--hash-dataset")
    add("strict_hooks", False, None, user.strict_hooks, "--strict-hooks")
    add("plugin_path", "", PLUGIN_PATH_ENV, None, None)
    add(
        "disable_hooks",
        "",
        DISABLE_HOOKS_ENV,
        ",".join(user.disable_hooks) if user.disable_hooks is not None else None,
        None,
    )
    add("dask_scheduler", None, SCHEDULER_ENV, None, "--scheduler")
    # None: the plugin's manifest decides (else the engine's default, and 5 s of grace)
    container = user.container or ContainerDefaults()
    add("container.memory", None, None, container.memory, "--memory")
    add("container.cpus", None, None, container.cpus, "--cpus")
    add("container.shm_size", None, None, container.shm_size, "--shm-size")
    add("container.gpus", None, None, container.gpus, "--gpus")
    add("container.stop_grace_s", None, None, container.stop_grace_s, "--stop-grace")
    for item in given.pop("container.mounts", ()):
        name, sep, mount = item.partition("=")
        if not sep or not name or not mount:
            raise UsageError(
                f"--mount {item!r}: expected NAME=PATH, e.g. --mount models=/srv/models"
            )
        given[f"container.mounts.{name}"] = mount
    mount_names = set(container.mounts) | {
        key.removeprefix("container.mounts.")
        for key in given
        if key.startswith("container.mounts.")
    }
    for name in sorted(mount_names):
        add(f"container.mounts.{name}", None, None, container.mounts.get(name), "--mount")
    slurm = user.slurm or SlurmDefaults()
    add("slurm.partition", None, None, slurm.partition, "--slurm-partition")
    add("slurm.time", SLURM_DEFAULT_TIME, None, slurm.time, "--slurm-time")
    add("slurm.mem", SLURM_DEFAULT_MEM, None, slurm.mem, "--slurm-mem")
    add("slurm.cpus", SLURM_DEFAULT_CPUS, None, slurm.cpus, "--slurm-cpus")
    add("slurm.account", None, None, slurm.account, "--slurm-account")
    if "slurm.directives" in given:  # --slurm-directive adds to the file's lines
        given["slurm.directives"] = [*slurm.directives, *given["slurm.directives"]]
    add("slurm.directives", [], None, slurm.directives or None, "--slurm-directive")
    add("slurm.interface", None, None, slurm.interface, None)
    return settings
