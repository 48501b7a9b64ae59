"""Installed entry points, read once, and the distributions that provide them.

Both plugin discovery and hook loading need the entry points of their group
and the name and version of the distribution behind each; this is the one
place that reads them.
"""

from __future__ import annotations

import importlib.metadata

import msgspec


class Distribution(msgspec.Struct, frozen=True):
    """The installed distribution that provides an entry point."""

    name: str
    version: str


EntryPointsByGroup = dict[str, list[importlib.metadata.EntryPoint]]


def scan_entry_points(*groups: str) -> EntryPointsByGroup:
    """Entry points of several groups from one pass over the installed distributions.

    A run needs both the plugin and the hook groups; each pass reads every
    distribution's entry_points.txt, so one pass instead of two saves time on
    every run.
    """
    everything = importlib.metadata.entry_points()
    return {group: list(everything.select(group=group)) for group in groups}


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
