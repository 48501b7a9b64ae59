"""Fixtures of the fault-injection suite (helpers live in faultkit)."""

from __future__ import annotations

import shutil
import uuid

import pytest
from faultkit import HOSTILE, MARK_ENV

from pluginsite import PluginSite


@pytest.fixture
def hsite(site: PluginSite, monkeypatch) -> PluginSite:
    """The test's plugin site with the hostile package in it, and a fresh process marker."""
    shutil.copytree(HOSTILE, site.root / "hostile")
    monkeypatch.setenv(MARK_ENV, f"hostile-{uuid.uuid4().hex}")
    return site
