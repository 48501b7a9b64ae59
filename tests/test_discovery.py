"""Discovery through the Python API, against real entry points and manifests."""

from __future__ import annotations

import pytest

from mdivicomtools.discovery import discover, resolve
from mdivicomtools.errors import PluginBroken
from pluginsite import plugin_dict


def by_origin_id(found, plugin_id):
    matches = [r for r in found.plugins if r.id == plugin_id]
    assert len(matches) == 1, [r.summary() for r in found.plugins]
    return matches[0]


def test_entry_point_plugin_is_listed_with_its_distribution(site):
    site.plugin("sync-audio", dist="mditools-sync-audio")
    record = by_origin_id(discover(), "sync-audio")
    assert record.ok and record.error is None
    assert record.ref == "lab/sync-audio"
    assert record.source == "entry_point"
    assert (record.distribution.name, record.distribution.version) == (
        "mditools-sync-audio",
        "1.0.0",
    )
    assert record.spec.entry.callable.endswith(".run:run")
    assert "sync-audio = " in record.origin


def test_optional_and_unknown_meta_fields_are_kept(site):
    schema = {"type": "object", "properties": {"max_lag_s": {"type": "number"}}}
    site.plugin(
        "pupil",
        inputs=["gaze"],
        outputs={"dataset": "openSIDS"},
        config_schema=schema,
        homepage="https://example.org",
        license="MIT",
        authors=[{"name": "A"}],
        x_lab_specific={"colour": "blue"},
    )
    meta = by_origin_id(discover(), "pupil").details()["meta"]
    assert meta["config_schema"] == schema
    assert meta["inputs"] == ["gaze"] and meta["outputs"] == {"dataset": "openSIDS"}
    assert meta["authors"] == [{"name": "A"}] and meta["license"] == "MIT"
    assert meta["x_lab_specific"] == {"colour": "blue"}


GOOD_META = plugin_dict("x")["meta"]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "def get_plugin():\n    import not_a_module_anywhere\n",
            "get_plugin() raised ModuleNotFoundError: No module named 'not_a_module_anywhere'",
        ),
        (
            "def get_plugin():\n    raise RuntimeError('boom\\nsecond line')\n",
            "get_plugin() raised RuntimeError: boom second line",
        ),
        ("def get_plugin():\n    raise SystemExit(3)\n", "get_plugin() raised SystemExit: 3"),
        (
            # a __str__ that raises took discovery down with it
            "class Odd(Exception):\n"
            "    def __str__(self):\n"
            "        return self.detail\n"
            "def get_plugin():\n    raise Odd()\n",
            "get_plugin() raised Odd: (its message could not be read: its __str__ raised "
            "AttributeError)",
        ),
        (
            "def get_plugin():\n    return ['not', 'a', 'dict']\n",
            "get_plugin() returned a list, not a dict",
        ),
        ("get_plugin = {'meta': 1}\n", "is a dict, not a get_plugin() function"),
        (
            "def get_plugin():\n    return {'meta': {'id': 'x', 'tags': {1, 2}}}\n",
            "not JSON-safe: $.meta.tags is a set, not a JSON value",
        ),
        (
            "def get_plugin():\n    return {'meta': {'id': 'x', 'score': float('nan')},"
            " 'entry': {'callable': 'a:b'}}\n",
            "not JSON-safe: $.meta.score is nan",
        ),
        ("def get_plugin():\n    return {'entry': {'callable': 'a:b'}}\n", "meta is missing"),
    ],
)
def test_broken_get_plugin_cases(site, source, reason):
    site.module("p_bad.__init__", "")
    site.module("p_bad.plugin", source)
    site.distribution("bad-dist", {"bad": "p_bad.plugin:get_plugin"})
    site.plugin("fine")
    found = discover()
    bad = by_origin_id(found, "x" if "'id': 'x'" in source else "bad")
    assert bad.status == "broken"
    assert reason in bad.error
    assert "\n" not in bad.error
    assert by_origin_id(found, "fine").ok


def test_import_error_of_the_entry_point_module(site):
    site.distribution("ghost-dist", {"ghost": "p_ghost_missing.plugin:get_plugin"})
    record = by_origin_id(discover(), "ghost")
    assert record.status == "broken"
    assert record.error.startswith("import failed: ModuleNotFoundError")
    assert record.distribution.name == "ghost-dist"


def _meta(**changes):
    meta = dict(GOOD_META)
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return meta


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"meta": _meta(version=None), "entry": {"callable": "a:b"}}, "meta.version is missing"),
        (
            {"meta": _meta(description=None), "entry": {"callable": "a:b"}},
            "meta.description is missing",
        ),
        (
            {"meta": _meta(version=3), "entry": {"callable": "a:b"}},
            "meta.version: expected a string, got an integer",
        ),
        ({"meta": _meta(kind="wasm"), "entry": {"callable": "a:b"}}, "meta.kind"),
        (
            {"meta": _meta(id="../x"), "entry": {"callable": "a:b"}},
            "meta.id '../x' is not a safe slug",
        ),
        (
            {"meta": _meta(id="Sync Audio"), "entry": {"callable": "a:b"}},
            "meta.id 'Sync Audio' is not a safe slug",
        ),
        (
            {"meta": _meta(publisher="Lab/Evil"), "entry": {"callable": "a:b"}},
            "meta.publisher 'Lab/Evil' is not a safe slug",
        ),
        (
            {"meta": _meta(api_version="mdivicomtools.plugin.v1.0"), "entry": {"callable": "a:b"}},
            "has unknown major v1",
        ),
        # the minor is optional (`...v0` loads): the message said `v<major>.<minor>`
        (
            {"meta": _meta(api_version="v0.1"), "entry": {"callable": "a:b"}},
            "is not of the form 'mdivicomtools.plugin.v<major>[.<minor>]'",
        ),
        ({"meta": _meta()}, "entry.callable is missing"),
        (
            {"meta": _meta(), "entry": {"callable": "no colon here"}},
            "is not of the form 'package.module:function'",
        ),
        ({"meta": _meta(kind="container")}, "container is missing"),
        (
            {"meta": _meta(kind="container"), "container": {"image": "i", "netwrok": True}},
            "container.netwrok is not a known field",
        ),
        (
            {"meta": _meta(kind="container"), "container": {"image": "i", "command": "sh -c x"}},
            "container.command is a string; give an argv list",
        ),
        (
            {"meta": _meta(kind="container"), "container": {"image": "i", "pull": "sometimes"}},
            "container.pull",
        ),
    ],
)
def test_invalid_meta_names_the_field(site, data, reason):
    site.manifest("bad.json", data)
    site.plugin("fine")
    found = discover()
    bad = [r for r in found.plugins if r.source == "manifest"]
    assert len(bad) == 1
    assert bad[0].status == "broken"
    assert reason in bad[0].error, bad[0].error
    assert str(site.manifests / "bad.json") in bad[0].origin
    assert by_origin_id(found, "fine").ok


def test_unsafe_id_never_becomes_a_usable_ref(site):
    site.manifest("evil.json", {"meta": _meta(id="../x"), "entry": {"callable": "a:b"}})
    record = discover().plugins[0]
    assert record.status == "broken"
    with pytest.raises(Exception, match="not a plugin reference"):
        resolve("../x")


def test_duplicate_publisher_and_id_marks_every_provider(site):
    site.plugin("dup", dist="first-dist")
    site.plugin("dup", dist="second-dist")
    site.plugin("other")
    found = discover()
    dups = [r for r in found.plugins if r.id == "dup"]
    assert [r.status for r in dups] == ["broken", "broken"]
    assert all("duplicate plugin lab/dup: also provided by" in r.error for r in dups)
    # and how to fix it, which it did not say
    assert all(
        r.error.endswith(
            "; keep one (pip uninstall the package you do not want, "
            "or move its manifest out of the plugin path)"
        )
        for r in dups
    )
    assert "second-dist" in dups[0].error or "second-dist" in dups[1].error
    assert by_origin_id(found, "other").ok


def test_same_id_different_publishers_is_not_a_duplicate(site):
    site.plugin("sync", dist="a-dist", publisher="lab-a")
    site.plugin("sync", dist="b-dist", ep_name="sync-b", publisher="lab-b")
    assert [r.status for r in discover().plugins] == ["ok", "ok"]


def test_list_is_sorted_by_publisher_then_id(site):
    site.plugin("zeta", publisher="alpha")
    site.plugin("beta", publisher="zulu")
    site.plugin("alpha", publisher="zulu")
    site.manifest("m.json", plugin_dict("mid", publisher="mike", kind="container"))
    assert discover().refs() == ["alpha/zeta", "mike/mid", "zulu/alpha", "zulu/beta"]


def test_missing_publisher_defaults_to_local_with_a_note(site):
    site.plugin("anon", publisher=None)
    record = by_origin_id(discover(), "anon")
    assert record.ok and record.ref == "local/anon"
    assert any("meta.publisher is not set" in note for note in record.notes)
    assert "publisher" not in record.details()["meta"]


def test_legacy_flat_shape_is_accepted_with_a_deprecation_note(site):
    site.module("p_flat.__init__", "")
    site.module("p_flat.run", "def run(dataset_dir, out_dir, config, **kw):\n    return None\n")
    site.module(
        "p_flat.plugin",
        """
        from p_flat.run import run
        def get_plugin():
            return {"id": "flat", "kind": "python", "version": "0.9", "publisher": "old",
                    "description": "old style", "run": run}
        """,
    )
    site.module("p_flat2.__init__", "")
    site.module(
        "p_flat2.plugin",
        """
        def get_plugin():
            return {"id": "flat2", "kind": "python", "version": "0.9", "description": "d",
                    "run_ref": "p_flat2.run:run"}
        """,
    )
    site.distribution(
        "flat-dist", {"flat": "p_flat.plugin:get_plugin", "flat2": "p_flat2.plugin:get_plugin"}
    )
    found = discover()
    flat = by_origin_id(found, "flat")
    assert flat.ok and flat.spec.entry.callable == "p_flat.run:run"
    assert flat.spec.meta.api_version == "mdivicomtools.plugin.v0.1"
    assert any("deprecated flat plugin shape" in n for n in flat.notes)
    flat2 = by_origin_id(found, "flat2")
    assert flat2.ok and flat2.spec.entry.callable == "p_flat2.run:run"
    assert flat2.notes[0].endswith("{'meta': {...}, 'entry': {'callable': 'module:run'}} instead")


def test_the_flat_shape_note_of_a_container_plugin_points_at_container(site):
    """It told a container plugin to add entry.callable, which a container plugin
    cannot have: following the note made the plugin broken."""
    flat = plugin_dict("old-tool", kind="container")
    site.manifest("old-tool.json", {**flat["meta"], "container": flat["container"]})
    found = by_origin_id(discover(), "old-tool")
    assert found.ok and found.spec.container is not None
    assert found.notes[0] == (
        "deprecated flat plugin shape (id/kind/... at the top level); use "
        "{'meta': {...}, 'container': {...}} instead"
    )


def test_a_broken_plugin_without_a_publisher_is_local_like_a_working_one(site):
    """Its ref was the bare id, so `plugins list --publisher local` left it out and
    `plugins info local/tool` said it was not installed ("did you mean 'tool'?")."""
    meta = plugin_dict("tool", kind="container", publisher=None)
    del meta["meta"]["description"]
    site.manifest("tool.json", meta)
    site.manifest("garbled.json", "{oops")
    found = discover()
    tool = by_origin_id(found, "tool")
    assert not tool.ok and tool.publisher == "local" and tool.ref == "local/tool"
    assert by_origin_id(found, "garbled").publisher is None  # nothing says who it is
    assert resolve("local/tool", allow_broken=True) is not None
    with pytest.raises(PluginBroken, match=r"meta\.description is missing"):
        resolve("local/tool")


def test_hidden_files_in_the_plugin_path_are_not_manifests(site):
    """An editor's lock file and macOS's AppleDouble file next to a manifest were
    listed as two broken plugins ('.#tool', '._tool')."""
    real = site.manifest("tool.json", plugin_dict("tool", kind="container"))
    (site.manifests / ".#tool.json").symlink_to("ana@lab-pc.4242:1700000000")
    (site.manifests / "._tool.json").write_bytes(b"\x00\x05\x16\x07\x00\x02Mac OS X")
    site.manifest(".hidden.toml", "not = [toml")
    found = discover()
    assert found.refs() == ["lab/tool"]
    assert by_origin_id(found, "tool").origin == f"manifest {real}"


def test_manifest_json_and_toml(site):
    site.manifest("count.json", plugin_dict("count-lines", kind="container"))
    site.manifest(
        "tool.toml",
        """
        [meta]
        api_version = "mdivicomtools.plugin.v0.1"
        id = "toml-tool"
        kind = "container"
        version = "2.0.0"
        description = "From TOML"
        publisher = "lab"

        [container]
        image = "localhost/mdivicom-test:1"
        command = ["sh", "-c", "echo {out_dir}"]
        network = false
        pull = "never"
        """.replace("\n        ", "\n"),
    )
    site.manifest("README.md", "not a manifest")
    found = discover()
    assert found.refs() == ["lab/count-lines", "lab/toml-tool"]
    tool = by_origin_id(found, "toml-tool")
    assert tool.source == "manifest" and tool.distribution is None
    assert tool.spec.container.pull == "never"
    assert tool.spec.container.command == ["sh", "-c", "echo {out_dir}"]


def test_malformed_manifests_are_broken_with_line_numbers(site):
    site.manifest("bad.json", '{"meta": {\n  "id": "x",\n  oops\n}}')
    site.manifest("bad.toml", '[meta]\nid = "x"\nthis is not toml\n')
    site.manifest("list.json", "[1, 2]")
    found = discover()
    errors = {r.origin.rsplit("/", 1)[-1]: r.error for r in found.plugins}
    assert [r.status for r in found.plugins] == ["broken"] * 3
    assert errors["bad.json"].startswith("invalid JSON at line 3 column 3")
    assert errors["bad.toml"].startswith("invalid TOML: ")
    assert "(at line 3, column 6)" in errors["bad.toml"]
    assert errors["list.json"] == "manifest holds a list, not an object"


def test_plugin_path_that_is_not_a_folder_is_a_warning(site, monkeypatch, tmp_path):
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", f"{tmp_path / 'nope'}:{site.manifests}")
    site.manifest("ok.json", plugin_dict("ok-tool", kind="container"))
    found = discover()
    assert found.refs() == ["lab/ok-tool"]
    assert found.warnings == [
        f"MDIVICOM_PLUGIN_PATH names '{tmp_path / 'nope'}', which is not a folder"
    ]


def test_chatty_get_plugin_does_not_write_to_stdout(site, capsys):
    site.module("p_chatty.__init__", "print('hello from import')")
    site.module(
        "p_chatty.plugin",
        f"""
        def get_plugin():
            print('hello from get_plugin')
            return {plugin_dict("chatty", run_module="p_chatty.run")!r}
        """,
    )
    site.distribution("chatty-dist", {"chatty": "p_chatty.plugin:get_plugin"})
    assert discover().refs() == ["lab/chatty"]
    out, err = capsys.readouterr()
    assert out == ""
    assert "hello from import" in err and "hello from get_plugin" in err


@pytest.mark.parametrize(
    ("version", "noted"),
    [
        ("1.2.0", False),
        ("1.2.0-rc.1", False),
        ("0.1.0.dev0", False),
        ("2024.11", False),
        ("version one!", True),
        ("1.0 beta", True),
    ],
)
def test_a_version_no_tool_can_order_is_noted(site, version, noted):
    site.plugin("versioned", version=version)
    record = by_origin_id(discover(), "versioned")
    assert record.ok and record.version == version
    said = [n for n in record.notes if n.startswith("meta.version")]
    assert said == (
        [
            f"meta.version {version!r} is neither SemVer nor a PEP 440 version; use one such "
            "as '1.2.0' or '1.2.0rc1', so that people and tools can order releases"
        ]
        if noted
        else []
    )


def test_descriptor_1_is_moved_once_per_discovery_not_twice_per_plugin(site, monkeypatch):
    """What a plugin's registration writes to descriptor 1 goes to stderr (--json stays
    one document). Moving the descriptor there and back for each import and each
    get_plugin() cost flushes and four system calls twice per plugin: with 200
    plugins, `plugins list --json` missed its target (benchmarks/discovery.py)."""
    import os

    for number in range(5):
        site.plugin(f"quiet-{number}")
    moves = []
    real_dup2 = os.dup2

    def counting_dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        if fd2 == 1:
            moves.append(fd)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", counting_dup2)
    found = discover()
    assert sorted(r.id for r in found.plugins if r.ok) == [f"quiet-{n}" for n in range(5)]
    assert len(moves) == 2  # to stderr, and back


@pytest.mark.parametrize("version_at", [None, 4088, 4096, 9000])
def test_a_distributions_name_and_version_are_read_whatever_its_header_holds(site, version_at):
    """Only the start of METADATA is read (4096 bytes): a Version line cut at the end
    of that block (`Version: 1.` of 1.10.3) must not be taken, and a header past it
    is still found (through the full parser)."""
    site.plugin("pupil", dist="lab-pupil")
    (dist_info,) = site.root.glob("lab_pupil-*.dist-info")
    head = "Metadata-Version: 2.1\nName: lab-pupil\n"
    if version_at is not None:  # a Summary line long enough to put Version at that byte
        head += "Summary: " + "x" * (version_at - len(head) - len("Summary: \n")) + "\n"
        assert len(head) == version_at
    (dist_info / "METADATA").write_text(
        head + "Version: 1.10.3\n\n" + "long description\n" * 500, encoding="utf-8"
    )
    record = by_origin_id(discover(), "pupil")
    assert (record.distribution.name, record.distribution.version) == ("lab-pupil", "1.10.3")
