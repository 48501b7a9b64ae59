"""Finding plugins: entry points and manifest files, never their run code.

Discovery calls each plugin's light `get_plugin()` (or reads its manifest) and
turns the dict into a PluginRecord. It never imports `entry.callable`: listing a
hundred plugins must not pull in a hundred deep-learning stacks.

Modules: `sources` (entry points, manifest files), `records` (one plugin,
usable or broken), `refs` (`<publisher>/<id>` resolution). May import `common`,
`model` and `errors`; nothing here runs a plugin.
"""

from __future__ import annotations

from mdivicomtools.common.entrypoints import Distribution, scan_entry_points
from mdivicomtools.discovery.records import (
    Discovery,
    PluginRecord,
    Source,
)
from mdivicomtools.discovery.refs import parse_ref, resolve
from mdivicomtools.discovery.sources import (
    ENTRY_POINT_GROUP,
    PLUGIN_PATH_ENV,
    discover,
    load_entry_point,
    load_manifest,
    plugin_path_folders,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_PATH_ENV",
    "Discovery",
    "Distribution",
    "PluginRecord",
    "Source",
    "discover",
    "load_entry_point",
    "load_manifest",
    "parse_ref",
    "plugin_path_folders",
    "resolve",
    "scan_entry_points",
]
