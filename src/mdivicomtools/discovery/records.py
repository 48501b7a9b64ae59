"""What discovery knows about one plugin: a PluginRecord, usable or broken.

Turning a plugin dict into a record is the one step every source shares
(entry points and manifest files), so a plugin is judged the same way wherever
it came from.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import msgspec

from mdivicomtools.common.entrypoints import Distribution
from mdivicomtools.common.text import one_line
from mdivicomtools.model.contract import (
    DEFAULT_PUBLISHER,
    InvalidPlugin,
    PluginSpec,
    is_version,
    parse_plugin,
)

Source = Literal["entry_point", "manifest"]


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
    #: the entry point's name or the manifest file's stem: what a plugin was called
    #: before its author changed meta.id, and what its users still type
    registered_as: str = ""

    @property
    def ref(self) -> str:
        return f"{self.publisher}/{self.id}" if self.publisher else self.id

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """One `plugins list --json` item: who the plugin is, and its declared contract.

        Scripts written for the contract read `api_version`, `meta`, `entry`,
        `config_schema`, `inputs` and `outputs` from each item; all come from
        `get_plugin()` or the manifest, so listing still imports no run code.
        """
        meta: dict[str, Any] | None
        if self.spec is not None:
            meta = self.spec.meta.to_dict()
            entry = msgspec.to_builtins(self.spec.entry)
            container = msgspec.to_builtins(self.spec.container)
        else:
            meta, entry, container = self.raw_meta, None, None
        declared = meta or {}
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
            "api_version": declared.get("api_version"),
            "meta": meta,
            "entry": entry,
            "container": container,
            "config_schema": declared.get("config_schema"),
            "inputs": declared.get("inputs"),
            "outputs": declared.get("outputs"),
        }

    def details(self) -> dict[str, Any]:
        """The `plugins info --json` object: the summary, with only the section
        (`entry` or `container`) the plugin has."""
        data = self.summary()
        for section in ("entry", "container"):
            if data[section] is None:
                del data[section]
        return data


class Discovery(msgspec.Struct):
    """Everything discovery found, plus warnings about the search itself."""

    plugins: list[PluginRecord]
    warnings: list[str] = []

    def refs(self) -> list[str]:
        return [record.ref for record in self.plugins]


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


def make_record(
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
        return broken(
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
    if not is_version(meta.version):
        notes.append(
            f"meta.version {meta.version!r} is neither SemVer nor a PEP 440 version; use "
            "one such as '1.2.0' or '1.2.0rc1', so that people and tools can order releases"
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
        registered_as=fallback_id,
    )


def broken(
    reason: str,
    *,
    raw_meta: dict[str, Any] | None,
    fallback_id: str,
    source: Source,
    origin: str,
    distribution: Distribution | None,
) -> PluginRecord:
    meta = raw_meta or {}
    publisher = _str_or_none(meta.get("publisher"))
    if raw_meta is not None and meta.get("publisher") is None:
        # a readable meta without a publisher gets `local`, as the plugin does once
        # fixed: its ref, `--publisher local` and `local/<id>` must find it now too
        publisher = DEFAULT_PUBLISHER
    return PluginRecord(
        id=_str_or_none(meta.get("id")) or fallback_id,
        publisher=publisher,
        kind=_str_or_none(meta.get("kind")),
        version=_str_or_none(meta.get("version")),
        description=_str_or_none(meta.get("description")),
        status="broken",
        error=one_line(reason),
        source=source,
        origin=origin,
        distribution=distribution,
        raw_meta=raw_meta,
        registered_as=fallback_id,
    )


def mark_duplicates(records: list[PluginRecord]) -> None:
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
            record.error = one_line(
                f"duplicate plugin {ref}: also provided by {others}; keep one (pip uninstall "
                "the package you do not want, or move its manifest out of the plugin path)"
            )


def sort_key(record: PluginRecord) -> tuple[str, str, str]:
    return (record.publisher or "", record.id, record.origin)
