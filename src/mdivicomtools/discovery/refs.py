"""Plugin references: `<id>` or `<publisher>/<id>`, resolved to one plugin."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

from mdivicomtools.discovery.records import PluginRecord, mark_duplicates
from mdivicomtools.discovery.sources import (
    discover,
    load_entry_point,
    manifest_records,
    plugin_entry_points,
)
from mdivicomtools.errors import (
    AmbiguousReference,
    InvalidReference,
    PluginBroken,
    PluginNotFound,
)
from mdivicomtools.model.contract import is_slug


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
    candidates = plugin_entry_points() if entry_points is None else entry_points
    quick = [load_entry_point(ep) for ep in candidates if ep.name == plugin_id]
    quick.extend(manifest_records(warnings))
    mark_duplicates(quick)
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
