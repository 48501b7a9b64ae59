"""Finding plugins: entry points and manifest files, never their run code.

Discovery calls each plugin's light `get_plugin()` (or reads its manifest) and
turns the dict into a PluginRecord. It never imports `entry.callable`: listing a
hundred plugins must not pull in a hundred deep-learning stacks. Each plugin is
loaded in its own try, so one broken plugin is listed with its reason and every
other plugin still works.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from mdivicomtools.contract import (
    DEFAULT_PUBLISHER,
    InvalidPlugin,
    PluginSpec,
    is_slug,
    parse_plugin,
)
from mdivicomtools.errors import (
    AmbiguousReference,
    InvalidReference,
    PluginBroken,
    PluginNotFound,
)

ENTRY_POINT_GROUP = "mdivicomtools.plugins"
PLUGIN_PATH_ENV = "MDIVICOM_PLUGIN_PATH"
MANIFEST_SUFFIXES = (".json", ".toml")
_REASON_LIMIT = 400

Source = Literal["entry_point", "manifest"]


class Distribution(msgspec.Struct, frozen=True):
    """The installed distribution that provides an entry-point plugin."""

    name: str
    version: str


class PluginRecord(msgspec.Struct, kw_only=True):
    """One discovered plugin, usable or broken, as lists and refs see it.

    `spec` is set only for usable plugins. For broken ones the summary fields
    hold whatever could be read, so the user can still tell which plugin it is.
    """

    id: str
    publisher: str | None
    kind: str | None
    version: str | None
    description: str | None
    status: Literal["ok", "broken"]
    error: str | None
    source: Source
    origin: str
    distribution: Distribution | None = None
    notes: list[str] = []
    spec: PluginSpec | None = None
    raw_meta: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.publisher}/{self.id}" if self.publisher else self.id

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """The fields of one `plugins list --json` item (INTERFACE.md section 3)."""
        return {
            "ref": self.ref,
            "id": self.id,
            "publisher": self.publisher,
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "distribution": msgspec.to_builtins(self.distribution),
            "origin": self.origin,
            "notes": list(self.notes),
        }

    def details(self) -> dict[str, Any]:
        """The `plugins info --json` object: the summary plus meta and entry/container."""
        data = self.summary()
        if self.spec is not None:
            data["meta"] = self.spec.meta.to_dict()
            if self.spec.entry is not None:
                data["entry"] = msgspec.to_builtins(self.spec.entry)
            if self.spec.container is not None:
                data["container"] = msgspec.to_builtins(self.spec.container)
        else:
            data["meta"] = self.raw_meta
        return data


class Discovery(msgspec.Struct):
    """Everything discovery found, plus warnings about the search itself."""

    plugins: list[PluginRecord]
    warnings: list[str] = []

    def refs(self) -> list[str]:
        return [record.ref for record in self.plugins]


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_LIMIT else line[: _REASON_LIMIT - 3] + "..."


def _describe_exception(exc: BaseException) -> str:
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _raw_meta(data: object) -> dict[str, Any] | None:
    """Best-effort meta of a plugin dict that failed validation (for display only)."""
    if not isinstance(data, dict):
        return None
    meta = data.get("meta") if "meta" in data else data
    if not isinstance(meta, dict):
        return None
    return {k: v for k, v in meta.items() if isinstance(k, str) and not callable(v)}


def _record(
    data: object,
    *,
    fallback_id: str,
    source: Source,
    origin: str,
    distribution: Distribution | None,
) -> PluginRecord:
    try:
        spec = parse_plugin(data)
    except InvalidPlugin as exc:
        return _broken(
            str(exc),
            raw_meta=_raw_meta(data),
            fallback_id=fallback_id,
            source=source,
            origin=origin,
            distribution=distribution,
        )
    meta = spec.meta
    notes = list(spec.notes)
    if meta.publisher is None:
        notes.append(
            f"meta.publisher is not set; using {DEFAULT_PUBLISHER!r} (set it to your lab or "
            "user name so that <publisher>/<id> stays unique)"
        )
    return PluginRecord(
        id=meta.id,
        publisher=meta.effective_publisher,
        kind=meta.kind,
        version=meta.version,
        description=meta.description,
        status="ok",
        error=None,
        source=source,
        origin=origin,
        distribution=distribution,
        notes=notes,
        spec=spec,
    )


def _broken(
    reason: str,
    *,
    raw_meta: dict[str, Any] | None,
    fallback_id: str,
    source: Source,
    origin: str,
    distribution: Distribution | None,
) -> PluginRecord:
    meta = raw_meta or {}
    return PluginRecord(
        id=_str_or_none(meta.get("id")) or fallback_id,
        publisher=_str_or_none(meta.get("publisher")),
        kind=_str_or_none(meta.get("kind")),
        version=_str_or_none(meta.get("version")),
        description=_str_or_none(meta.get("description")),
        status="broken",
        error=one_line(reason),
        source=source,
        origin=origin,
        distribution=distribution,
        raw_meta=raw_meta,
    )


# --- entry points -----------------------------------------------------------


EntryPointsByGroup = dict[str, list[importlib.metadata.EntryPoint]]


def scan_entry_points(*groups: str) -> EntryPointsByGroup:
    """Entry points of several groups from one pass over the installed distributions.

    A run needs both the plugin and the hook groups; each pass reads every
    distribution's entry_points.txt, so one pass instead of two saves time on
    every run.
    """
    everything = importlib.metadata.entry_points()
    return {group: list(everything.select(group=group)) for group in groups}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def distribution_of(ep: importlib.metadata.EntryPoint) -> Distribution | None:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    try:
        return _read_name_version(dist)
    except Exception:  # a damaged METADATA file must not break discovery
        return None


def _read_name_version(dist: importlib.metadata.Distribution) -> Distribution | None:
    """Name and Version from the METADATA header, without the email parser.

    `dist.metadata` parses the whole file with the email package, twice if both
    fields are read; with hundreds of plugins that was a third of `plugins list`.
    The two fields are single-line headers near the top, so a line scan suffices.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # end of the header block
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version"):
            found.setdefault(key, value.strip())
    if "Name" in found and "Version" in found:
        return Distribution(name=found["Name"], version=found["Version"])
    return Distribution(name=dist.metadata["Name"], version=dist.version)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send anything a plugin prints while loading to stderr.

    `--json` promises one JSON document on stdout; a chatty get_plugin() must not
    corrupt it.
    """
    with contextlib.redirect_stdout(sys.stderr):
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
    try:
        with _quiet_stdout():
            factory = ep.load()
    except (Exception, SystemExit) as exc:
        return _broken(f"import failed: {_describe_exception(exc)}", raw_meta=None, **common)
    if not callable(factory):
        return _broken(
            f"{ep.value} is a {type(factory).__name__}, not a get_plugin() function",
            raw_meta=None,
            **common,
        )
    try:
        with _quiet_stdout():
            data = factory()
    except (Exception, SystemExit) as exc:
        return _broken(f"get_plugin() raised {_describe_exception(exc)}", raw_meta=None, **common)
    if not isinstance(data, dict):
        return _broken(
            f"get_plugin() returned a {type(data).__name__}, not a dict", raw_meta=None, **common
        )
    return _record(data, **common)


# --- manifest files ---------------------------------------------------------


def plugin_path_folders(value: str | None = None) -> list[Path]:
    """The folders named by MDIVICOM_PLUGIN_PATH (os.pathsep-separated)."""
    raw = os.environ.get(PLUGIN_PATH_ENV, "") if value is None else value
    return [Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip()]


def _manifest_files(folders: Iterable[Path], warnings: list[str]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            warnings.append(f"{PLUGIN_PATH_ENV} names {str(folder)!r}, which is not a folder")
            continue
        files.extend(
            sorted(p for p in folder.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        )
    return files


def _read_manifest(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        from mdivicomtools import tomlio

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
        return _broken(reason, raw_meta=None, **common)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # tomllib.TOMLDecodeError is a ValueError whose message carries line and column
        return _broken(f"cannot read manifest: {_describe_exception(exc)}", raw_meta=None, **common)
    if not isinstance(data, dict):
        return _broken(
            f"manifest holds a {type(data).__name__}, not an object", raw_meta=None, **common
        )
    return _record(data, **common)


def _manifest_records(warnings: list[str]) -> list[PluginRecord]:
    return [load_manifest(path) for path in _manifest_files(plugin_path_folders(), warnings)]


# --- the whole picture --------------------------------------------------------


def _mark_duplicates(records: list[PluginRecord]) -> None:
    """Mark every provider of a publisher/id that more than one source provides.

    Picking one silently would make a run depend on install order; marking all
    of them broken tells the user to uninstall one.
    """
    groups: dict[str, list[PluginRecord]] = defaultdict(list)
    for record in records:
        if record.ok:
            groups[record.ref].append(record)
    for ref, group in groups.items():
        if len(group) < 2:
            continue
        for record in group:
            others = "; ".join(other.origin for other in group if other is not record)
            record.status = "broken"
            record.error = one_line(f"duplicate plugin {ref}: also provided by {others}")


def _sort_key(record: PluginRecord) -> tuple[str, str, str]:
    return (record.publisher or "", record.id, record.origin)


def discover() -> Discovery:
    """Find every plugin: all `mdivicomtools.plugins` entry points and manifests."""
    warnings: list[str] = []
    records = [load_entry_point(ep) for ep in _entry_points()]
    records.extend(_manifest_records(warnings))
    _mark_duplicates(records)
    records.sort(key=_sort_key)
    return Discovery(plugins=records, warnings=warnings)


def parse_ref(ref: str) -> tuple[str | None, str]:
    """Split `<id>` or `<publisher>/<id>`; raise InvalidReference otherwise."""
    publisher, slash, plugin_id = ref.rpartition("/")
    if (slash and not is_slug(publisher)) or not is_slug(plugin_id):
        raise InvalidReference(
            f"{ref!r} is not a plugin reference; use '<id>' or '<publisher>/<id>' with lowercase "
            "letters, digits, '.', '_' or '-'"
        )
    return (publisher or None), plugin_id


def _matching(
    records: Iterable[PluginRecord], publisher: str | None, plugin_id: str
) -> list[PluginRecord]:
    return [
        r for r in records if r.id == plugin_id and (publisher is None or r.publisher == publisher)
    ]


def _suggest(ref: str, records: list[PluginRecord]) -> list[str]:
    import difflib  # only on the error path

    by_key: dict[str, str] = {}
    for record in records:
        by_key.setdefault(record.ref, record.ref)
        by_key.setdefault(record.id, record.ref)
    close = difflib.get_close_matches(ref, list(by_key), n=3, cutoff=0.6)
    return list(dict.fromkeys(by_key[key] for key in close))


def resolve(
    ref: str,
    *,
    allow_broken: bool = False,
    entry_points: list[importlib.metadata.EntryPoint] | None = None,
) -> PluginRecord:
    """Find the one plugin `ref` names.

    The usual case, an entry point named after its plugin id, loads only that
    entry point (plus the manifests, which are cheap files); every other
    plugin's get_plugin() is left alone. Only when that finds nothing does it
    scan everything, so a plugin registered under another entry-point name is
    still found.
    """
    publisher, plugin_id = parse_ref(ref)
    warnings: list[str] = []
    candidates = _entry_points() if entry_points is None else entry_points
    quick = [load_entry_point(ep) for ep in candidates if ep.name == plugin_id]
    quick.extend(_manifest_records(warnings))
    _mark_duplicates(quick)
    records = quick
    matches = _matching(records, publisher, plugin_id)
    if not matches:
        records = discover().plugins
        matches = _matching(records, publisher, plugin_id)
    if not matches:
        raise PluginNotFound(ref, _suggest(ref, records))
    publishers = {record.publisher for record in matches}
    if len(publishers) > 1:
        raise AmbiguousReference(ref, [record.ref for record in matches])
    record = matches[0]
    if not record.ok and not allow_broken:
        raise PluginBroken(record.ref, record.error or "unknown reason")
    return record
