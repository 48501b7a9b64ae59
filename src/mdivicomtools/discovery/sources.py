"""Where plugins come from: entry points and manifest files.

Each source is read in its own try, so one broken plugin is listed with its
reason and every other plugin still works. An entry point's `get_plugin()` is
called, but never the plugin's `entry.callable`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mdivicomtools.common.entrypoints import distribution_of
from mdivicomtools.common.home import expand_home
from mdivicomtools.common.streams import stdout_to_stderr
from mdivicomtools.common.text import a_type, describe_exception, one_line, os_reason
from mdivicomtools.common.workdir import kept_working_folder
from mdivicomtools.discovery.records import (
    Discovery,
    PluginRecord,
    broken,
    make_record,
    mark_duplicates,
    sort_key,
)
from mdivicomtools.settings import PLUGIN_PATH_ENV

ENTRY_POINT_GROUP = "mdivicomtools.plugins"
MANIFEST_SUFFIXES = (".json", ".toml")


def plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


@contextlib.contextmanager
def _foreign_code() -> Iterator[None]:
    """While a plugin's registration module loads and its get_plugin() runs.

    Anything it prints goes to stderr: `--json` promises one JSON document on
    stdout, and a chatty get_plugin() must not corrupt it. A working folder it
    changes is put back: the user's relative `--dataset` and `--out` are
    resolved after the plugin is found.
    """
    with stdout_to_stderr(), kept_working_folder():
        yield


def load_entry_point(ep: importlib.metadata.EntryPoint) -> PluginRecord:
    """Load one entry point and call its `get_plugin()`, isolating every failure."""
    distribution = distribution_of(ep)
    origin = f"entry point '{ep.name} = {ep.value}'"
    if distribution is not None:
        origin += f" of {distribution.name} {distribution.version}"
    common: dict[str, Any] = {
        "fallback_id": ep.name,
        "source": "entry_point",
        "origin": origin,
        "distribution": distribution,
    }
    # one block for the import and the call: moving descriptor 1 and back costs
    # flushes and system calls, paid per plugin (200 plugins: several ms of a list)
    with _foreign_code():
        try:
            factory = ep.load()
        except (Exception, SystemExit) as exc:
            return broken(f"import failed: {describe_exception(exc)}", raw_meta=None, **common)
        if not callable(factory):
            return broken(
                f"{ep.value} is {a_type(factory)}, not a get_plugin() function",
                raw_meta=None,
                **common,
            )
        try:
            data = factory()
        except (Exception, SystemExit) as exc:
            return broken(f"get_plugin() raised {describe_exception(exc)}", raw_meta=None, **common)
    if not isinstance(data, dict):
        return broken(f"get_plugin() returned {a_type(data)}, not a dict", raw_meta=None, **common)
    record = make_record(data, **common)
    if record.ok and ep.name != record.id:
        # refs.resolve loads only the entry point named like the id it is asked for
        record.notes.append(
            f"the entry point is named {ep.name!r}, not after meta.id {record.id!r}, so "
            f"`mdivicom run {record.id}` loads every installed plugin to find it; name the "
            f"entry point {record.id!r}"
        )
    return record


def plugin_path_folders(value: str | None = None) -> list[Path]:
    """The folders named by MDIVICOM_PLUGIN_PATH (os.pathsep-separated)."""
    raw = os.environ.get(PLUGIN_PATH_ENV, "") if value is None else value
    return [expand_home(part) for part in raw.split(os.pathsep) if part.strip()]


def _manifest_files(folders: Iterable[Path], warnings: list[str]) -> list[Path]:
    """Every manifest file of the folders, each read once.

    Sites set MDIVICOM_PLUGIN_PATH in several places (a profile script, a
    module file, a user's own shell): the same folder named twice, or through
    a symbolic link, would otherwise list each of its plugins twice, and both
    broken as duplicates of themselves. A folder that cannot be read (another
    user's private one) is a warning, like one that does not exist. A symbolic
    link to a manifest that is gone is kept, to be listed broken rather than
    left out unseen; a FIFO or a device is never taken (reading would block).
    """
    files: list[Path] = []
    seen: set[str] = set()
    for folder in folders:
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            warnings.append(f"{PLUGIN_PATH_ENV} names {str(folder)!r}, which is not a folder")
            continue
        except OSError as exc:
            warnings.append(
                f"{PLUGIN_PATH_ENV} names {str(folder)!r}, which cannot be read "
                f"({exc.strerror or describe_exception(exc)}); its manifests are left out"
            )
            continue
        real_folder = os.path.realpath(folder)
        for entry in entries:
            # hidden names are left out, as the shell's `*.json` does: an editor's lock
            # file (`.#x.json`, a link to nothing) and macOS's `._x.json` on a shared
            # drive were listed as broken plugins next to the real one
            if entry.name.startswith(".") or (
                os.path.splitext(entry.name)[1] not in MANIFEST_SUFFIXES
            ):
                continue
            # the file itself, so a folder named twice and a link to a manifest of
            # another named folder count once (only links cost a system call)
            linked = entry.is_symlink()
            real = os.path.realpath(entry.path) if linked else os.path.join(real_folder, entry.name)
            if real in seen:
                continue
            if entry.is_file() or (linked and not os.path.exists(entry.path)):
                seen.add(real)
                files.append(Path(entry.path))
    return files


def _read_manifest(path: Path) -> object:
    text = path.read_text(encoding="utf-8-sig")  # an editor's byte order mark is no error
    if path.suffix == ".toml":
        # tomllib costs 25 ms; `plugins list` pays it only when a .toml manifest exists
        from mdivicomtools.common import tomlio

        return tomlio.loads(text)
    return json.loads(text)


def load_manifest(path: Path) -> PluginRecord:
    """Read one manifest file; a file that does not parse is a broken plugin."""
    common: dict[str, Any] = {
        "fallback_id": path.stem,
        "source": "manifest",
        "origin": f"manifest {path}",
        "distribution": None,
    }
    try:
        data = _read_manifest(path)
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        return broken(reason, raw_meta=None, **common)
    except FileNotFoundError as exc:
        if path.is_symlink():
            reason = f"it links to {os.readlink(path)!r}, which does not exist"
            return broken(f"cannot read manifest: {reason}", raw_meta=None, **common)
        return broken(f"cannot read manifest: {os_reason(exc, path)}", raw_meta=None, **common)
    except UnicodeDecodeError as exc:
        # was `cannot read manifest: UnicodeDecodeError: 'utf-8' codec can't decode ...`
        reason = f"not UTF-8 text (at byte offset {exc.start}); save it as UTF-8"
        return broken(reason, raw_meta=None, **common)
    except OSError as exc:
        return broken(f"cannot read manifest: {os_reason(exc, path)}", raw_meta=None, **common)
    except ValueError as exc:
        # tomllib.TOMLDecodeError is a ValueError whose message carries line and column
        toml = path.suffix == ".toml"
        reason = f"invalid TOML: {one_line(str(exc))}" if toml else describe_exception(exc)
        return broken(reason, raw_meta=None, **common)
    if not isinstance(data, dict):
        return broken(f"manifest holds {a_type(data)}, not an object", raw_meta=None, **common)
    return make_record(data, **common)


def manifest_records(warnings: list[str]) -> list[PluginRecord]:
    return [load_manifest(path) for path in _manifest_files(plugin_path_folders(), warnings)]


def discover() -> Discovery:
    """Find every plugin: all `mdivicomtools.plugins` entry points and manifests."""
    warnings: list[str] = []
    # descriptor 1 moved once for every plugin's block (each block still keeps the
    # working folder and sys.stdout to itself)
    with stdout_to_stderr():
        records = [load_entry_point(ep) for ep in plugin_entry_points()]
    records.extend(manifest_records(warnings))
    mark_duplicates(records)
    records.sort(key=sort_key)
    return Discovery(plugins=records, warnings=warnings)
