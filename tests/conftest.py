from __future__ import annotations

import importlib
import sys

import pytest

from pluginsite import PluginSite


@pytest.fixture
def site(tmp_path, monkeypatch) -> PluginSite:
    """A fresh plugin site, visible to this process and to `mdivicom` subprocesses."""
    plugin_site = PluginSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(plugin_site.root))
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", str(plugin_site.manifests))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield plugin_site
    for name in set(sys.modules) - before:
        if name.startswith("p_"):
            del sys.modules[name]
