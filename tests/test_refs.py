"""Reference resolution: `<id>`, `<publisher>/<id>`, ambiguity, suggestions, fast path."""

from __future__ import annotations

import pytest

from mdivicomtools.discovery import parse_ref, resolve
from mdivicomtools.errors import (
    AmbiguousReference,
    InvalidReference,
    PluginBroken,
    PluginNotFound,
)
from pluginsite import plugin_dict


def test_bare_id_and_full_ref(site):
    site.plugin("sync-audio")
    assert resolve("sync-audio").ref == "lab/sync-audio"
    assert resolve("lab/sync-audio").ref == "lab/sync-audio"


def test_full_ref_with_the_wrong_publisher_is_not_found(site):
    site.plugin("sync-audio")
    with pytest.raises(PluginNotFound, match="did you mean 'lab/sync-audio'"):
        resolve("other/sync-audio")


def test_bare_id_shared_by_two_publishers_lists_both(site):
    site.plugin("sync", dist="a-dist", publisher="lab-a")
    site.plugin("sync", dist="b-dist", publisher="lab-b")
    with pytest.raises(AmbiguousReference) as excinfo:
        resolve("sync")
    assert excinfo.value.candidates == ["lab-a/sync", "lab-b/sync"]
    assert "lab-a/sync, lab-b/sync" in str(excinfo.value)
    assert resolve("lab-b/sync").publisher == "lab-b"


def test_unknown_ref_suggests_close_matches(site):
    site.plugin("sync-audio")
    site.plugin("gaze-track")
    with pytest.raises(PluginNotFound) as excinfo:
        resolve("sync-audoi")
    assert excinfo.value.suggestions == ["lab/sync-audio"]
    assert "did you mean 'lab/sync-audio'?" in str(excinfo.value)


def test_a_broken_plugin_with_an_unsafe_name_is_never_suggested(site):
    """`upper` suggested 'Upper' and `lab/nopub` suggested 'Bad Lab/nopub': refs of
    broken plugins that the command then refuses as malformed references."""
    site.manifest("upper.json", plugin_dict("Upper", kind="container"))
    site.manifest("badpub.json", plugin_dict("nopub", kind="container", publisher="Bad Lab"))
    site.plugin("uppers")
    with pytest.raises(PluginNotFound) as excinfo:
        resolve("upper")
    assert excinfo.value.suggestions == ["lab/uppers"]
    with pytest.raises(PluginNotFound) as excinfo:
        resolve("lab/nopub")
    assert excinfo.value.suggestions == []


def test_the_same_id_under_another_publisher_is_the_suggestion(site):
    # `mdivicom/hello` suggested `mdivicom/sync-audio`, closer as a whole string
    site.plugin("hello", dist="hello-dist", publisher="example")
    site.plugin("sync-audio", dist="sync-dist", publisher="mdivicom")
    with pytest.raises(PluginNotFound) as excinfo:
        resolve("mdivicom/hello")
    assert excinfo.value.suggestions == ["example/hello"]
    with pytest.raises(PluginNotFound) as excinfo:
        resolve("mdivicom/helo")
    assert excinfo.value.suggestions[0] == "example/hello"


def test_unknown_ref_without_close_match_points_to_the_list(site):
    site.plugin("sync-audio")
    with pytest.raises(PluginNotFound, match="run 'mdivicom plugins list'"):
        resolve("zzz")


@pytest.mark.parametrize("ref", ["", "Sync", "../x", "a/b/c", "lab/", "/x", "Lab/x", "x y"])
def test_malformed_refs_are_rejected(ref):
    with pytest.raises(InvalidReference, match="is not a plugin reference"):
        parse_ref(ref)


def test_broken_plugin_is_an_error_unless_allowed(site):
    site.manifest("broken.json", {"meta": {"id": "broken", "publisher": "lab"}})
    with pytest.raises(PluginBroken, match="plugin 'lab/broken' is broken: meta"):
        resolve("broken")
    assert resolve("broken", allow_broken=True).status == "broken"


def test_resolving_one_plugin_does_not_call_the_others(site, tmp_path):
    """The usual case (entry-point name == id) loads only that entry point."""
    target_marker = tmp_path / "target-loaded"
    other_marker = tmp_path / "other-loaded"
    for plugin_id, marker in (("target", target_marker), ("other", other_marker)):
        pkg = f"p_fast_{plugin_id}"
        site.module(f"{pkg}.__init__", "")
        site.module(
            f"{pkg}.plugin",
            f"""
            open({str(marker)!r}, "w").close()
            def get_plugin():
                return {plugin_dict(plugin_id, run_module=pkg + ".run")!r}
            """,
        )
        site.distribution(f"{plugin_id}-dist", {plugin_id: f"{pkg}.plugin:get_plugin"})
    assert resolve("target").ref == "lab/target"
    assert target_marker.exists()
    assert not other_marker.exists()


def test_entry_point_named_differently_is_found_by_the_full_scan(site):
    site.plugin("real-id", ep_name="some_other_name")
    assert resolve("real-id").ref == "lab/real-id"


def test_manifest_plugins_resolve_too(site):
    site.manifest("tool.json", plugin_dict("count-lines", kind="container"))
    record = resolve("lab/count-lines")
    assert record.source == "manifest" and record.spec.container.image
