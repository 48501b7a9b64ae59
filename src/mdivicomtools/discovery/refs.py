"""Plugin references: `<id>` or `<publisher>/<id>`, resolved to one plugin."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

from mdivicomtools.common.text import close_matches
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
    """Split `<id>` or `<publisher>/<id>`; raise InvalidReference otherwise (a TypeError
    for what is no string: `resolve(5)` failed with `'int' object has no attribute
    'rpartition'`)."""
    if not isinstance(ref, str):
        raise TypeError(
            f"a plugin reference must be a string such as 'sync-audio' or 'lab/sync-audio', "
            f"got {ref!r}"
        )
    publisher, slash, plugin_id = ref.rpartition("/")
    if (slash and not is_slug(publisher)) or not is_slug(plugin_id):
        lowered = ref.lower()
        # `MyPlug`, `Lab/sync-audio`: ids are lowercase; say which one was meant
        meant = (
            f"; did you mean {lowered!r}?"
            if lowered != ref and all(is_slug(part) for part in lowered.split("/", 1))
            else ""
        )
        raise InvalidReference(
            f"{ref!r} is not a plugin reference; use '<id>' or '<publisher>/<id>' with lowercase "
            f"letters, digits, '.', '_' or '-'{meant}"
        )
    return (publisher or None), plugin_id


def _matching(
    records: Iterable[PluginRecord], publisher: str | None, plugin_id: str
) -> list[PluginRecord]:
    return [
        r for r in records if r.id == plugin_id and (publisher is None or r.publisher == publisher)
    ]


def _suggest(ref: str, records: list[PluginRecord]) -> list[str]:
    """The installed refs `ref` most likely meant, best first.

    A wrong or guessed publisher is the usual slip, so the same id under another
    publisher is the answer when there is one. Otherwise the id is compared with
    the installed ids before the whole ref with the installed refs: compared
    whole, `mdivicom/hello` is closer to `mdivicom/sync-audio` (the shared
    publisher) than to `example/hello`.
    """
    _, plugin_id = parse_ref(ref)
    # a broken plugin with an unsafe id or publisher ('Upper', 'My Lab/x') has a
    # ref that parse_ref refuses: suggesting it sent the user to another error
    records = [
        r for r in records if is_slug(r.id) and (r.publisher is None or is_slug(r.publisher))
    ]
    same_id = sorted({record.ref for record in records if record.id == plugin_id})
    if same_id:
        return same_id
    # an author who renamed meta.id kept the entry point or manifest file name
    # (`wav-stats.json` with id `wav-level`): too far apart for a close match
    renamed = sorted({record.ref for record in records if record.registered_as == plugin_id})
    if renamed:
        return renamed
    by_id: dict[str, str] = {}
    by_ref: dict[str, str] = {}
    for record in records:
        by_id.setdefault(record.id, record.ref)
        by_ref.setdefault(record.ref, record.ref)
    close = [by_id[key] for key in close_matches(plugin_id, list(by_id), 3)]
    close += [by_ref[key] for key in close_matches(ref, list(by_ref), 3)]
    return list(dict.fromkeys(close))[:3]


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
        raise PluginBroken(record.ref, record.error or "unknown reason", record.origin)
    return record
