"""Result-bundle sidecars: the model, every validation rule, the writer, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdivicomtools import schemas
from mdivicomtools.bundles.resultbundle import (
    BundleFile,
    FileTime,
    build_resultbundle,
    find_sidecars,
    infer_format,
    load_resultbundle,
    validate_data,
    validate_file,
    write_resultbundle,
)
from pluginsite import MDIVICOM


def sidecar(folder: Path, **changes) -> Path:
    data = {
        "resultbundle_type": "pupilcloud.raw_export.v4",
        "schema_version": "1.0.0",
        "time_reference": {"kind": "session", "unit": "ns"},
        "files": [
            {
                "path": "gaze.tsv",
                "role": "samples",
                "format": "tsv",
                "required": True,
                "key_columns": {"timestamp_ns": "timestamp [ns]", "person_id": "section id"},
                "time": {"kind": "point", "key": "timestamp_ns"},
            },
            {
                "path": "fixations.csv.gz",
                "role": "events",
                "format": "csv.gz",
                "required": True,
                "time": {"kind": "interval", "start_key": "start", "end_key": "end"},
            },
            {"path": "video.mp4", "role": "scene", "format": "mp4", "required": False},
        ],
    }
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gaze.tsv").write_text("section id\ttimestamp [ns]\tgaze x [px]\nA\t1\t0.5\n")
    with gzip.open(folder / "fixations.csv.gz", "wt") as handle:
        handle.write('"start",end,"duration, ms"\n1,2,3\n')
    path = folder / "resultbundle.json"
    path.write_text(json.dumps(data))
    return path


def pointers(report):
    return [p.pointer for p in report.problems]


def test_a_good_sidecar_is_valid(tmp_path):
    report = validate_file(sidecar(tmp_path / "b"))
    assert report.valid, report.messages()
    assert (report.resultbundle_type, report.schema_version) == (
        "pupilcloud.raw_export.v4",
        "1.0.0",
    )
    assert report.problems == [] and report.notes == []


def test_unknown_fields_and_extra_columns_are_allowed(tmp_path):
    path = sidecar(tmp_path / "b", x_vendor={"any": 1})
    data = json.loads(path.read_text())
    data["files"][0]["checksum"] = "abc"
    data["time_reference"]["origin"] = "recording start"
    report = validate_data(data, path)
    assert report.valid, report.messages()
    bundle, extras = load_resultbundle(path)
    assert extras == {"x_vendor": {"any": 1}}
    assert bundle.files[0].key_columns == {
        "timestamp_ns": "timestamp [ns]",
        "person_id": "section id",
    }


def test_missing_optional_file_is_fine_missing_required_is_not(tmp_path):
    path = sidecar(tmp_path / "b")
    (tmp_path / "b" / "gaze.tsv").unlink()
    report = validate_file(path)
    assert pointers(report) == ["/files/0/path"]
    assert "required file 'gaze.tsv' does not exist" in report.problems[0].message
    assert report.problems[0].expected == "the file to exist"


def test_every_envelope_problem_is_reported_at_once(tmp_path):
    path = sidecar(tmp_path / "b", schema_version=1, time_reference={"kind": "session"})
    data = json.loads(path.read_text())
    del data["resultbundle_type"]
    del data["files"][1]["role"]
    data["files"][2]["required"] = "no"
    report = validate_data(data, path)
    assert not report.valid
    assert sorted(pointers(report)) == sorted(
        ["", "/files/1", "/files/2/required", "/schema_version", "/time_reference"]
    )
    messages = "\n".join(report.messages())
    assert f"{path}: /: 'resultbundle_type' is a required property" in messages
    assert "/schema_version: 1 is not of type 'string' (expected type string)" in messages
    assert "/time_reference: 'unit' is a required property" in messages
    assert "/files/1: 'role' is a required property" in messages


def test_header_without_the_mapped_column(tmp_path):
    path = sidecar(tmp_path / "b")
    (tmp_path / "b" / "gaze.tsv").write_text("timestamp [ns]\tgaze x [px]\n1\t2\n")
    report = validate_file(path)
    assert pointers(report) == ["/files/0/key_columns/person_id"]
    problem = report.problems[0]
    assert problem.message == "column 'section id' is not in the header of 'gaze.tsv'"
    assert problem.expected == "one of the header's columns: timestamp [ns], gaze x [px]"


def test_time_key_resolves_through_key_columns_or_names_the_column(tmp_path):
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][0]["time"] = {"kind": "point", "key": "gaze x [px]"}  # an unmapped real column
    assert validate_data(data, path).valid
    data["files"][0]["time"] = {"kind": "point", "key": "timestamp_ns"}  # mapped
    assert validate_data(data, path).valid
    data["files"][0]["time"] = {"kind": "point", "key": "t"}
    assert pointers(validate_data(data, path)) == ["/files/0/time/key"]


def test_interval_without_end_key_and_point_without_key(tmp_path):
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][1]["time"] = {"kind": "interval", "start_key": "start"}
    data["files"][0]["time"] = {"kind": "point"}
    report = validate_data(data, path)
    assert pointers(report) == ["/files/0/time/key", "/files/1/time/end_key"]
    assert [p.message for p in report.problems] == [
        "a point time needs key",
        "an interval time needs end_key",
    ]


def test_a_time_key_of_the_wrong_type_is_one_problem_not_two(tmp_path):
    """`"key": 7` was reported twice at one pointer: not a string, and `needs key`."""
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][0]["time"] = {"kind": "point", "key": 7}
    data["files"][1]["time"] = {"kind": "interval", "start_key": "start", "end_key": ""}
    report = validate_data(data, path)
    assert [(p.pointer, p.message) for p in report.problems] == [
        ("/files/0/time/key", "7 is not of type 'string'"),
        ("/files/1/time/end_key", "an interval time needs end_key"),
    ]


@pytest.mark.parametrize("kind", [["point"], {"point": 1}])
def test_an_unhashable_time_kind_is_a_problem_not_a_crash(tmp_path, kind):
    # the kind was looked up in a dict: a list or an object raised TypeError, which
    # the bundles hook turned into a hook error instead of an invalid bundle
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][0]["time"] = {"kind": kind, "key": "timestamp_ns"}
    report = validate_data(data, path)
    assert not report.valid
    assert pointers(report) == ["/files/0/time/kind"]  # the schema names the odd kind


def test_gzip_tables_are_read_for_headers_only(tmp_path):
    path = sidecar(tmp_path / "b")
    with gzip.open(tmp_path / "b" / "fixations.csv.gz", "wt") as handle:
        handle.write("start,duration\n")
    report = validate_file(path)
    assert pointers(report) == ["/files/1/time/end_key"]
    assert "column 'end' is not in the header of 'fixations.csv.gz'" in report.messages()[0]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    """Spreadsheets save "CSV UTF-8" with a byte order mark; it was read as part of
    the first column's name, so a present key column was reported missing."""
    path = sidecar(tmp_path / "b")
    (tmp_path / "b" / "gaze.tsv").write_text(
        "timestamp [ns]\tsection id\n1\tA\n", encoding="utf-8-sig"
    )
    with gzip.open(tmp_path / "b" / "fixations.csv.gz", "wt", encoding="utf-8-sig") as handle:
        handle.write("start,end\n1,2\n")
    report = validate_file(path)
    assert report.valid, report.messages()


def test_a_sidecar_with_a_byte_order_mark_is_read(tmp_path):
    """A detached sidecar is written by hand, and some editors start it with a byte
    order mark, as they do the user config and manifests, which were read already."""
    path = sidecar(tmp_path / "b")
    path.write_text(path.read_text(), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    report = validate_file(path)
    assert report.valid, report.messages()
    bundle, _ = load_resultbundle(path)
    assert bundle.resultbundle_type == "pupilcloud.raw_export.v4"


def test_an_empty_table_is_one_problem_saying_so(tmp_path):
    """It was one problem per key column, each expecting "one of the header's
    columns: " followed by nothing."""
    path = sidecar(tmp_path / "b")
    (tmp_path / "b" / "gaze.tsv").write_bytes(b"")
    report = validate_file(path)
    assert [(p.pointer, p.message, p.expected) for p in report.problems] == [
        (
            "/files/0/path",
            "'gaze.tsv' is empty: it has no header line",
            "a header line naming the key columns",
        )
    ]


def test_non_tabular_formats_skip_the_column_check_and_say_so(tmp_path):
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    (tmp_path / "b" / "video.mp4").write_bytes(b"\x00")
    data["files"][2]["key_columns"] = {"frame": "frame_index"}
    report = validate_data(data, path)
    assert report.valid
    assert report.notes == ["column checks skipped for non-tabular format(s): mp4"]


def test_paths_may_not_leave_the_payload_root(tmp_path):
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][2]["path"] = "../elsewhere.mp4"
    assert pointers(validate_data(data, path)) == ["/files/2/path"]


@pytest.mark.parametrize("required", [True, False])
def test_an_empty_path_names_no_file(tmp_path, required):
    """An empty path joined to the payload root named the root itself, a folder that
    always exists: the entry named no file and the sidecar was valid."""
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][2].update(path="", required=required)
    report = validate_data(data, path)
    assert [(p.pointer, p.message) for p in report.problems] == [
        ("/files/2/path", "the path is empty; it names no file")
    ]
    with pytest.raises(ValueError, match="names no file"):
        write_resultbundle(
            tmp_path / "b",
            resultbundle_type="x.v1",
            files=[BundleFile(path="", role="r", format="tsv", required=required)],
        )


def test_a_required_path_naming_a_folder_says_so(tmp_path):
    path = sidecar(tmp_path / "b")
    (tmp_path / "b" / "frames").mkdir()
    data = json.loads(path.read_text())
    data["files"][2].update(path="frames", required=True)
    [problem] = validate_data(data, path).problems
    assert problem.message == (
        f"required file 'frames' is a folder under {str(tmp_path / 'b')!r}, not a file"
    )
    assert problem.expected == "a file, not a folder"


def test_a_symlinked_table_is_read_at_its_target_when_that_may_be_read(tmp_path):
    """A table that is a symlink (a datalad or git-annex payload) was never read:
    `... is a symlink; it was not read` made the bundle INVALID."""
    path = sidecar(tmp_path / "b")
    annex = tmp_path / "b" / ".git" / "annex" / "objects"
    annex.mkdir(parents=True)
    (tmp_path / "b" / "gaze.tsv").rename(annex / "SHA256E-s1--abc.tsv")
    (tmp_path / "b" / "gaze.tsv").symlink_to(Path(".git/annex/objects/SHA256E-s1--abc.tsv"))
    report = validate_file(path)
    assert report.valid, report.messages()
    assert validate_file(path, confine=tmp_path / "b").valid
    # a target outside what the check may read is still not read
    outside = tmp_path / "elsewhere.tsv"
    outside.write_text("section id\ttimestamp [ns]\n")
    (tmp_path / "b" / "gaze.tsv").unlink()
    (tmp_path / "b" / "gaze.tsv").symlink_to(outside)
    [problem] = validate_file(path, confine=tmp_path / "b").problems
    assert problem.message == "'gaze.tsv' lies outside the output folder; it was not read"
    # and a FIFO behind a link is refused, not waited on
    fifo = tmp_path / "b" / "fifo.tsv"
    os.mkfifo(fifo)
    (tmp_path / "b" / "gaze.tsv").unlink()
    (tmp_path / "b" / "gaze.tsv").symlink_to("fifo.tsv")
    [problem] = validate_file(path).problems
    assert problem.message == (
        f"required file 'gaze.tsv' is not a regular file under {str(tmp_path / 'b')!r}"
    )


def test_detached_sidecar_resolves_source_root(tmp_path):
    payload = tmp_path / "vendor" / "export"
    sidecar(payload)
    (payload / "resultbundle.json").unlink()
    registry = tmp_path / "out" / "resultbundles" / "pupil"
    registry.mkdir(parents=True)
    good = json.loads(sidecar(tmp_path / "template").read_text())
    relative = dict(good, source={"root": "../../../vendor/export"})
    (registry / "resultbundle.json").write_text(json.dumps(relative))
    assert validate_file(registry / "resultbundle.json").valid
    based = dict(good, source={"root": "export", "root_base": str(tmp_path / "vendor")})
    (registry / "resultbundle.json").write_text(json.dumps(based))
    assert validate_file(registry / "resultbundle.json").valid
    wrong = dict(good, source={"root": "export", "root_base": str(tmp_path / "nowhere")})
    (registry / "resultbundle.json").write_text(json.dumps(wrong))
    report = validate_file(registry / "resultbundle.json")
    assert pointers(report) == ["/files/0/path", "/files/1/path"]


@pytest.mark.parametrize("base", ["vendor", "./vendor", "", "sidecar\n", 5])
def test_a_root_base_that_names_no_folder_is_a_problem(tmp_path, monkeypatch, base):
    """A relative root_base was resolved against the current directory, so the verdict
    on one sidecar depended on where the check was started; it is refused instead."""
    payload = tmp_path / "vendor" / "export"
    sidecar(payload)
    (payload / "resultbundle.json").unlink()
    good = json.loads(sidecar(tmp_path / "template").read_text())
    registry = tmp_path / "out" / "resultbundles" / "pupil"
    registry.mkdir(parents=True)
    path = registry / "resultbundle.json"
    path.write_text(json.dumps(dict(good, source={"root": "export", "root_base": base})))
    for cwd in (tmp_path, registry):  # from tmp_path, "vendor/export" is the payload
        monkeypatch.chdir(cwd)
        report = validate_file(path)
        assert pointers(report) == ["/source/root_base"], report.problems
        expected = '"sidecar" or an absolute folder' if isinstance(base, str) else "type string"
        assert report.problems[0].expected == expected
        assert report.notes == ["files not checked: source.root_base names no folder"]


def test_malformed_json_is_a_problem_with_a_line(tmp_path):
    (tmp_path / "resultbundle.json").write_text('{\n  "files": [\n  oops\n]}')
    report = validate_file(tmp_path / "resultbundle.json")
    assert not report.valid
    assert report.problems[0].message.startswith("invalid JSON at line 3 column 3")


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "files",
                        "path",
                        "time",
                        "kind",
                        "key_columns",
                        "source",
                        "root",
                        "required",
                        "role",
                        "format",
                        "key",
                        "x",
                    ]
                )
                | st.text(max_size=6),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_the_validator_never_crashes_on_arbitrary_json(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    report = validate_data(data, folder / "resultbundle.json")
    assert isinstance(report.valid, bool)
    assert report.valid is (report.problems == [])


def test_writer_round_trip(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "events.tsv").write_text(
        "onset\tduration\ttier\tlabel\n0\t1\tspeech\thi\n"
    )
    (folder / "report.json").write_text("{}")
    monkeypatch.setenv("MDIVICOM_PLUGIN", "lab/annotate")
    monkeypatch.setenv("MDIVICOM_PLUGIN_VERSION", "2.0.0")
    monkeypatch.setenv("MDIVICOM_RUN_ID", "20260101T000000Z_abcdef01")
    path = write_resultbundle(
        folder,
        resultbundle_type="lab.annotations.v1",
        roles={"tables/events.tsv": "events"},
        times={
            "tables/events.tsv": FileTime(kind="interval", start_key="onset", end_key="duration")
        },
    )
    assert path == folder / "resultbundle.json"
    assert validate_file(path).valid
    bundle, extras = load_resultbundle(path)
    assert extras == {}
    assert [(f.path, f.role, f.format, f.required) for f in bundle.files] == [
        ("report.json", "data", "json", True),
        ("tables/events.tsv", "events", "tsv", True),
    ]
    assert bundle.producer.tool_ref == "lab/annotate"
    assert bundle.producer.pipeline_run_id == "20260101T000000Z_abcdef01"
    assert bundle.created_at.endswith("Z")


def test_writer_refuses_to_write_an_invalid_bundle(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\n")
    with pytest.raises(ValueError, match="column 'missing' is not in the header"):
        write_resultbundle(
            tmp_path, resultbundle_type="x.v1", key_columns={"t.tsv": {"id": "missing"}}
        )
    assert not (tmp_path / "resultbundle.json").exists()


def test_writer_refuses_a_file_name_json_cannot_hold(tmp_path):
    """It wrote `caf\\xe9.tsv` (JSON holds text only), an entry naming no file: the
    sidecar it promised to validate was INVALID on disk."""
    (tmp_path / "ok ü.tsv").write_text("a\tb\n")
    (tmp_path / os.fsdecode(b"caf\xe9.tsv")).write_text("a\tb\n")
    with pytest.raises(ValueError) as raised:
        write_resultbundle(tmp_path, resultbundle_type="x.v1")
    assert str(raised.value) == (
        "the result bundle would be invalid: file name(s) that are not UTF-8, which a "
        "sidecar cannot name: 'caf\\\\xe9.tsv'; rename them, or pass files= without them"
    )
    assert not (tmp_path / "resultbundle.json").exists()
    (tmp_path / os.fsdecode(b"caf\xe9.tsv")).unlink()
    assert validate_file(write_resultbundle(tmp_path, resultbundle_type="x.v1")).valid


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.tsv.gz", "tsv.gz"),
        ("b.CSV", "csv"),
        ("c.mp4", "mp4"),
        ("d.weird", "weird"),
        ("noext", "binary"),
    ],
)
def test_format_inference(name, fmt):
    assert infer_format(name) == fmt


def test_build_without_a_run_has_no_producer(tmp_path, monkeypatch):
    monkeypatch.delenv("MDIVICOM_PLUGIN", raising=False)
    (tmp_path / "x.txt").write_text("x")
    assert build_resultbundle(tmp_path, resultbundle_type="x.v1").producer is None


def test_problem_pointers_escape_keys_as_rfc6901_says(tmp_path):
    """A key with `/` or `~` was spelt into the pointer as it is: `/key_columns/a/b~c`
    points at another place; RFC 6901 escapes `~` as `~0` and `/` as `~1`."""
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    data["files"][0]["key_columns"]["a/b~c"] = "no such column"
    report = validate_data(data, path)
    assert pointers(report) == ["/files/0/key_columns/a~1b~0c"]


def test_generated_schemas_are_up_to_date():
    folder = Path(__file__).parents[1] / "docs" / "schemas"
    for name in schemas.SCHEMAS:
        assert (folder / name).read_bytes() == schemas.render(name), (
            f"docs/schemas/{name} is out of date: run python -m mdivicomtools.schemas docs/schemas"
        )


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    """`mdivicom bundles validate ARGS`, its output as text."""
    return subprocess.run(
        [MDIVICOM, "bundles", "validate", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_bundles_validate_cli(tmp_path):
    good = sidecar(tmp_path / "data" / "good")
    bad = sidecar(tmp_path / "data" / "nested" / "bad")
    (bad.parent / "gaze.tsv").unlink()
    assert find_sidecars(tmp_path / "data") == [good, bad]
    ok = validate(str(good))
    assert ok.returncode == 0 and ok.stdout.startswith("valid")
    both = validate(str(tmp_path / "data"))
    assert both.returncode == 1
    assert f"INVALID  {bad}" in both.stdout
    assert f"  - {bad}: /files/0/path: required file 'gaze.tsv' does not exist" in both.stdout
    assert both.stderr.strip() == "2 sidecar(s), 1 invalid"
    as_json = validate(str(tmp_path / "data"), "--json")
    reports = json.loads(as_json.stdout)
    assert [r["valid"] for r in reports] == [True, False]
    assert reports[1]["problems"][0]["pointer"] == "/files/0/path"
    missing = validate(str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = validate(str(empty))
    assert none.returncode == 2 and "no resultbundle.json under" in none.stderr


@pytest.mark.parametrize("version", ["banana", "v1.0.0", "1.0.0.0", "", "1..0"])
def test_a_schema_version_that_is_not_semver_like_is_a_problem(tmp_path, version):
    """A consumer compares the major number to know whether it can read a bundle."""
    report = validate_file(sidecar(tmp_path / "b", schema_version=version))
    assert pointers(report) == ["/schema_version"]
    assert report.problems[0].message == f"{version!r} is not of the expected form"
    assert report.problems[0].expected == "a SemVer-like version such as 1.0.0"


@pytest.mark.parametrize("version", ["1", "1.2", "1.0.0", "2.0.0-rc.1", "1.0.0+build.7"])
def test_semver_like_schema_versions_pass(tmp_path, version):
    assert validate_file(sidecar(tmp_path / "b", schema_version=version)).valid


def test_the_plugin_facing_module_offers_every_function_the_docs_name(tmp_path):
    """docs/resultbundles.md names these for plugin authors, at this import path."""
    import mdivicomtools.resultbundle as facade

    documented = ["write_resultbundle", "build_resultbundle", "load_resultbundle", "FileTime"]
    assert [name for name in documented if name not in facade.__all__] == []
    bundle, extras = facade.load_resultbundle(sidecar(tmp_path / "b", x_lab=1))
    assert (bundle.resultbundle_type, extras) == ("pupilcloud.raw_export.v4", {"x_lab": 1})


@pytest.mark.parametrize(
    ("spelt", "word"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")],
)
def test_a_number_json_cannot_hold_is_a_problem_where_it_stands(tmp_path, spelt, word):
    """Python's json reads these; jq, JavaScript and serde refuse the sidecar."""
    path = sidecar(tmp_path / "b")
    text = path.read_text()
    path.write_text(text[:-1] + f', "x_lab": {{"scores": [1, {spelt}]}}}}')
    report = validate_file(path)
    assert pointers(report) == ["/x_lab/scores/1"]
    assert report.problems[0].message.startswith(f"{word} ")
    assert "is not a JSON number" in report.problems[0].message


def test_a_key_given_twice_is_a_problem_naming_it(tmp_path):
    """json keeps the last value, other readers the first: two consumers, two bundles."""
    path = sidecar(tmp_path / "b")
    text = path.read_text()
    twice = '{"resultbundle_type": "lab.other.v1", "x": {"a": 1, "a": 2, "a": 3},'
    path.write_text(twice + text[1:])
    report = validate_file(path)
    assert pointers(report) == ["/resultbundle_type", "/x/a"]
    assert "given more than once" in report.problems[1].message


def test_a_file_listed_twice_is_a_problem_at_the_second_entry(tmp_path):
    path = sidecar(tmp_path / "b")
    data = json.loads(path.read_text())
    first = data["files"][0]
    data["files"] += [{**first, "role": "other"}, {**first, "path": "./gaze.tsv"}]
    report = validate_data(data, path)
    assert pointers(report) == ["/files/3/path", "/files/4/path"]
    assert report.problems[1].message == "'./gaze.tsv' is listed already, at /files/0"
    assert report.problems[1].expected == "each file listed once"


def test_a_symlinked_sidecar_is_read_at_its_target_as_its_tables_are(tmp_path):
    """In a datalad or git-annex dataset the sidecar is a symlink too: it was INVALID
    (`... is a symlink; it was not read`) while its symlinked tables were read."""
    path = sidecar(tmp_path / "b")
    annex = tmp_path / "b" / ".git" / "annex" / "objects"
    annex.mkdir(parents=True)
    path.rename(annex / "SHA256E-s9--sidecar.json")
    path.symlink_to(Path(".git/annex/objects/SHA256E-s9--sidecar.json"))
    report = validate_file(path)
    assert report.valid, report.messages()
    assert report.path == str(path)  # named where it is linked, its payload beside it
    assert validate_file(path, confine=tmp_path / "b").valid
    # in a run, a link to a sidecar the plugin could not read is not read
    outside = tmp_path / "host.json"
    (annex / "SHA256E-s9--sidecar.json").rename(outside)
    path.unlink()
    path.symlink_to(outside)
    assert validate_file(path).valid  # `bundles validate` reads what you point it at
    [problem] = validate_file(path, confine=tmp_path / "b").problems
    assert problem.message == (
        f"{str(path)!r} is a symlink to a file outside the output folder; it was not read"
    )
    # and a FIFO behind a link is refused, not waited on
    os.mkfifo(tmp_path / "b" / "fifo")
    path.unlink()
    path.symlink_to("fifo")
    [problem] = validate_file(path).problems
    assert "is a fifo, not a regular file; it was not read" in problem.message


def test_validate_stays_inside_the_tree_and_names_the_links_it_does_not_follow(tmp_path):
    """A link to `/` or `/proc` in a results tree made `bundles validate results` walk
    the whole machine (or hang in /proc); a link to another study's output made it
    check that study's sidecars unasked. Like `find` and `du`, it now stays inside
    the tree and names each link leading out of it; --follow-links follows them."""
    sidecar(tmp_path / "results" / "pupil")
    study = tmp_path / "study"
    sidecar(study / "own")
    (study / "pupil").symlink_to(tmp_path / "results" / "pupil")
    (study / "root").symlink_to("/")
    (study / "proc").symlink_to("/proc")
    (study / "loop").symlink_to(study)  # inside the tree: no note, searched once
    own = study / "own" / "resultbundle.json"
    unfollowed: list[str] = []
    assert find_sidecars(study, unfollowed=unfollowed) == [own]
    assert sorted(unfollowed) == sorted(
        [
            f"{str(study / 'pupil')!r} -> {str(tmp_path / 'results' / 'pupil')!r}",
            f"{str(study / 'proc')!r} -> '/proc'",
            f"{str(study / 'root')!r} -> '/'",
        ]
    )
    result = validate(str(study))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"valid    {own}  (pupilcloud.raw_export.v4 1.0.0)"
    assert len(result.stdout.splitlines()) == 1
    assert (
        f"note: symlink {str(study / 'root')!r} -> '/' leads out of {str(study)!r} and was "
        "not followed; name its target, or add --follow-links"
    ) in result.stderr.splitlines()


def test_validate_follows_folders_linked_in_when_asked(tmp_path):
    """A study that links a plugin's output in: `--follow-links` searches it, each real
    folder once; without it the error names the link it did not follow."""
    sidecar(tmp_path / "results" / "pupil")
    study = tmp_path / "study"
    study.mkdir()
    (study / "pupil").symlink_to(tmp_path / "results" / "pupil")
    (study / "loop").symlink_to(study)  # each real folder is searched once
    assert find_sidecars(study) == []  # the run's own check follows no link
    assert find_sidecars(study, follow_links=True) == [study / "pupil" / "resultbundle.json"]
    result = validate("--follow-links", str(study))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"valid    {study / 'pupil' / 'resultbundle.json'}")
    result = validate(str(study))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: no resultbundle.json under {str(study)!r} (symlinks not followed: "
        f"{str(study / 'pupil')!r} -> {str(tmp_path / 'results' / 'pupil')!r}); name a "
        "folder that holds one, or add --follow-links"
    )


def test_sidecars_are_found_under_a_folder_deeper_than_recursion_reaches(tmp_path):
    """A plugin output (or a dataset) 1500 folders deep: the run's bundle check failed
    as a hook error and `bundles validate` with `internal error (RecursionError ...)`;
    os.walk is recursive before Python 3.12."""
    top = tmp_path / "deep"
    top.mkdir()
    sidecar(top)
    fd = os.open(top, os.O_RDONLY)
    for _ in range(1500):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    try:
        deepest = top.joinpath(*["d"] * 1500)
        sidecar(deepest)
        for follow in (False, True):
            assert find_sidecars(top, follow_links=follow) == [
                top / "resultbundle.json",
                deepest / "resultbundle.json",
            ]
    finally:  # pytest's own clean-up of old tmp folders recurses (shutil.rmtree, < 3.12)
        subprocess.run(["rm", "-rf", str(top)], check=True)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1, 2]", "it holds a JSON list, not an object"),
        ('{"resultbundle_type": ["x"]}', "resultbundle_type: expected a string, got an array"),
        ('{"x": NaN}', "/x: NaN is not a JSON number; other JSON readers refuse it"),
        ("", "Expecting value: line 1 column 1 (char 0)"),
    ],
)
def test_loading_what_is_no_sidecar_raises_one_value_error_naming_it(tmp_path, text, why):
    """A consumer got AttributeError, msgspec's ValidationError or a NaN it had not expected."""
    path = tmp_path / "resultbundle.json"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        load_resultbundle(path)
    assert str(raised.value) == f"{str(path)!r} is not a result bundle: {why}"


def test_many_links_leading_out_are_named_a_few_and_counted(tmp_path):
    """A tree whose every session links its raw data in (300 links) gave 300 notes on
    stderr, one per link, burying the one report asked for."""
    study = tmp_path / "study"
    sidecar(study / "own")
    for index in range(300):
        (study / f"raw{index:03d}").symlink_to(tmp_path)
    result = validate(str(study))
    assert result.returncode == 0, result.stderr
    *notes, summary = result.stderr.splitlines()
    assert summary == "1 sidecar(s), 0 invalid"
    assert len(notes) == 6
    assert [note.split("'")[1] for note in notes[:5]] == [  # in name order
        str(study / f"raw{index:03d}") for index in range(5)
    ]
    assert notes[5] == (
        f"note: 295 more symlinks lead out of {str(study)!r} and were not followed; "
        "add --follow-links to follow them"
    )
