"""Config parsing, merging, hashing and redaction."""

from __future__ import annotations

import hashlib
import json

import pytest

from mdivicomtools.runner.config import (
    REDACTED,
    ConfigError,
    apply_sets,
    build_config,
    config_sha256,
    parse_config_option,
    redact,
)


def test_config_from_json_text_json_file_and_toml_file(tmp_path):
    assert parse_config_option('{"a": 1, "b": {"c": "x"}}') == {"a": 1, "b": {"c": "x"}}
    (tmp_path / "c.json").write_text('{"a": 2}')
    assert parse_config_option(str(tmp_path / "c.json")) == {"a": 2}
    (tmp_path / "c.toml").write_text("a = 3\n[sync]\nmax_lag_s = 5.5\n")
    assert parse_config_option(str(tmp_path / "c.toml")) == {"a": 3, "sync": {"max_lag_s": 5.5}}
    assert parse_config_option(None) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "^config: not valid JSON"),
        ("[1, 2]", "is neither a JSON object nor a .json/.toml file path"),
        ("missing.json", "^config: no such file 'missing.json'"),
        ("settings.yaml", "is neither a JSON object nor a .json/.toml file path"),
    ],
)
def test_config_option_errors(value, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        parse_config_option(value)


def test_config_file_errors_name_the_line(tmp_path):
    (tmp_path / "bad.json").write_text('{\n  "a": 1\n  "b": 2\n}')
    with pytest.raises(ConfigError, match="at line 3 column 3"):
        parse_config_option(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError) as raised:
        parse_config_option(str(tmp_path / "list.json"))
    assert str(raised.value) == (
        f"config: {str(tmp_path / 'list.json')!r} holds an array, not an object of config "
        """keys; write one such as {"max_lag_s": 5}"""
    )
    (tmp_path / "bad.toml").write_text("a = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        parse_config_option(str(tmp_path / "bad.toml"))


def test_config_files_are_utf8_text_a_byte_order_mark_allowed(tmp_path):
    """A Latin-1 file was `internal error (UnicodeDecodeError ...)`, exit 1; a file an
    editor saved with a byte order mark was `not valid JSON` at line 1 column 1."""
    (tmp_path / "latin.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ConfigError) as raised:
        parse_config_option(str(tmp_path / "latin.json"))
    assert str(raised.value) == (
        f"config: {str(tmp_path / 'latin.json')!r} is not UTF-8 text (at byte offset 13); "
        "save it as UTF-8"
    )
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbfa = 2\n")
    assert parse_config_option(str(tmp_path / "bom.json")) == {"a": 1}
    assert parse_config_option(str(tmp_path / "bom.toml")) == {"a": 2}


def test_sets_parse_json_values_and_nest_dotted_keys():
    config = apply_sets(
        {"keep": 1, "sync": {"ref": "cam1"}},
        [
            "sync.max_lag_s=5",
            "flag=true",
            "name=alice",
            'quoted="5"',
            "list=[1,2]",
            "sync.ref=cam2",
            "deep.a.b=null",
            "eq=a=b",
        ],
    )
    assert config == {
        "keep": 1,
        "sync": {"ref": "cam2", "max_lag_s": 5},
        "flag": True,
        "name": "alice",
        "quoted": "5",
        "list": [1, 2],
        "deep": {"a": {"b": None}},
        "eq": "a=b",
    }


@pytest.mark.parametrize(
    "raw", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "[1e999]", '{"x": NaN}', "9" * 5000]
)
def test_sets_keep_values_json_cannot_hold_as_the_string_written(raw):
    """NaN, Infinity and floats that overflow are not JSON: kept as written, not refused."""
    assert build_config({}, [f"a={raw}"]) == {"a": raw}


def test_sets_still_parse_finite_floats():
    assert build_config({}, ["a=1e300", "b=-2.5", "c=[0.5]"]) == {"a": 1e300, "b": -2.5, "c": [0.5]}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("novalue", "expected KEY=VALUE"),
        ("a..b=1", "expected KEY=VALUE"),
        ("=1", "KEY=VALUE"),
        # in JSON's words: it said "already set to a int"
        ("keep.x=1", r"keep is already a number \(1\), not an object"),
        ("text.x=1", r"text is already a string \(\"zoë\"\), not an object"),
        ("flag.x=1", r"flag is already a boolean \(true\), not an object"),
        ("none.x=1", "none is already null, not an object"),
        ("list.x=1", "list is already an array, not an object"),
    ],
)
def test_bad_sets(assignment, message):
    with pytest.raises(ConfigError, match=message):
        config = {"keep": 1, "text": "zoë", "flag": True, "none": None, "list": [1]}
        apply_sets(config, [assignment])


def test_sets_apply_after_config_and_do_not_mutate_it():
    base = {"a": {"b": 1}}
    assert build_config(base, ["a.b=2"]) == {"a": {"b": 2}}
    assert base == {"a": {"b": 1}}


def test_toml_datetimes_are_refused_as_not_json_safe(tmp_path):
    (tmp_path / "c.toml").write_text("when = 2026-01-01T00:00:00Z\n")
    with pytest.raises(ConfigError, match=r"config\.when is a datetime"):
        build_config(str(tmp_path / "c.toml"))


def test_config_hash_is_canonical_sorted_compact_utf8():
    config = {"b": 1, "a": {"z": "é", "y": [1, 2]}}
    expected = hashlib.sha256('{"a":{"y":[1,2],"z":"é"},"b":1}'.encode()).hexdigest()
    assert config_sha256(config) == expected
    assert config_sha256({"a": {"y": [1, 2], "z": "é"}, "b": 1}) == expected


def test_redaction_at_any_depth_and_any_case():
    config = {
        "api_key": "s1",
        "Token": "s2",
        "nested": {"client_SECRET": "s3", "list": [{"password": "s4", "user": "u"}]},
        "keyboard_layout": "de",
        "plain": "ok",
    }
    redacted = redact(config)
    assert redacted == {
        "api_key": REDACTED,
        "Token": REDACTED,
        "nested": {"client_SECRET": REDACTED, "list": [{"password": REDACTED, "user": "u"}]},
        "keyboard_layout": REDACTED,
        "plain": "ok",
    }
    assert config["api_key"] == "s1"
    assert "s1" not in json.dumps(redacted)
