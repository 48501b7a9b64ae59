"""`mdivicom dataset check` on a well-formed sample dataset and on broken ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from mdivicomtools.authoring.sampledata import make_sample_dataset as make_dataset
from mdivicomtools.bundles.opensids import check_dataset
from mdivicomtools.errors import UsageError
from pluginsite import MDIVICOM, cli_without_dac


def findings(report):
    return [(f.severity, f.path, f.line, f.message) for f in report.findings]


def test_a_well_formed_dataset_has_no_findings(tmp_path):
    report = check_dataset(make_dataset(tmp_path / "ds"))
    assert findings(report) == []
    assert (report.sessions, report.streams, report.errors) == (2, 4, 0)


def test_missing_manifest_and_sessions_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    report = check_dataset(tmp_path / "empty")
    assert [(f.severity, f.message.split(";")[0]) for f in report.findings] == [
        ("error", "dataset_manifest.yaml is missing"),
        ("error", "sessions/ is missing"),
    ]


@pytest.mark.parametrize(
    ("folder", "what"),
    [("sessions/ses-01", "one session (ses-01)"), ("sessions", "the sessions/ folder itself")],
)
def test_a_session_or_sessions_given_as_dir_says_so(tmp_path, folder, what):
    """`dataset check study/sessions/ses-01` only said the manifest and sessions/ were
    missing, as if the dataset were empty."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    findings = check_dataset(root / folder).findings
    assert findings[-1].message == (
        f"sessions/ is missing: DIR is {what}; check the dataset's root folder, "
        "the one that holds sessions/ and the manifest"
    )


def test_malformed_yaml_json_and_tsv_are_findings_with_lines(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    ses = root / "sessions" / "ses-01"
    (root / "dataset_manifest.yaml").write_text("name: x\nversion: [unclosed\n")
    (ses / "raw" / "audio" / "str-cam1" / "str-cam1_stream.yaml").write_text("- a list\n")
    (ses / "derived" / "sync" / "timebase_maps" / "str-cam2_timebase_map.json").write_text(
        '{\n  "offset_s": 1.0\n  "stream": "x"\n}'
    )
    (ses / "derived" / "sync" / "sync_markers.tsv").write_text("t\tstream\n1.0\tstr-cam1\textra\n")
    report = check_dataset(root)
    assert [(f.severity, f.path, f.line) for f in report.findings] == [
        ("error", "dataset_manifest.yaml", 3),
        ("error", "sessions/ses-01/raw/audio/str-cam1/str-cam1_stream.yaml", 1),
        ("error", "sessions/ses-01/derived/sync/timebase_maps/str-cam2_timebase_map.json", 3),
        ("error", "sessions/ses-01/derived/sync/sync_markers.tsv", 2),
    ]
    assert report.findings[0].message.startswith("not valid YAML")
    assert report.findings[1].message == "expected a mapping of keys to values, got list"
    assert report.findings[3].message == "has 3 column(s) where the header has 2"


def test_a_key_given_twice_in_yaml_is_an_error_at_its_second_line(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: a stream sidecar saying
    `rate_hz: 48000` and later `rate_hz: 44100` passed with the second."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    sidecar = root / "sessions" / "ses-01" / "raw" / "audio" / "str-cam1" / "str-cam1_stream.yaml"
    sidecar.write_text("modality: audio\ntimebase:\n  rate_hz: 48000\n  rate_hz: 44100\n")
    report = check_dataset(root)
    assert findings(report) == [
        (
            "error",
            "sessions/ses-01/raw/audio/str-cam1/str-cam1_stream.yaml",
            4,
            "not valid YAML: key 'rate_hz' is given twice (first at line 3)",
        )
    ]


def test_a_devices_own_events_tsv_under_raw_is_not_taken_for_the_pivot(tmp_path):
    """The annotations pivot is derived data; an eye tracker's export under raw/ may
    hold an events.tsv of its own columns, which was reported as a pivot without
    onset/duration/tier/label."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    device = root / "sessions" / "ses-01" / "raw" / "audio" / "str-cam1"
    (device / "events.tsv").write_text("timestamp [ns]\tname\n1\trecording.begin\n")
    misplaced = root / "sessions" / "ses-01" / "notes"
    misplaced.mkdir()
    (misplaced / "events.tsv").write_text("onset\tduration\ttier\tlabel\nx\t1\tt\tl\n")
    assert [(f.path, f.line) for f in check_dataset(root).findings] == [
        ("sessions/ses-01/notes/events.tsv", 2)
    ]


def test_events_pivot_columns_and_values(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text("onset\tduration\ttier\tlabel\n0.5\tlong\tspeech\thi\nx\t-1\tspeech\tyo\n")
    report = check_dataset(root)
    assert [(f.line, f.message) for f in report.findings] == [
        (2, "duration 'long' is not a number of seconds"),
        (3, "onset 'x' is not a number of seconds"),
        (3, "duration -1 is negative"),
    ]
    events.write_text("start\tduration\tlabel\n")
    (finding,) = check_dataset(root).findings
    assert finding.message.startswith("missing pivot column(s) onset, tier")
    assert finding.line == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999", "1_0", " 1", "0x1", "+1"])
def test_events_times_must_be_finite_decimal_numbers(tmp_path, value):
    """float() took nan, inf, 1e999 (inf) and 1_0: the check passed times no reader of a
    BIDS-like table reads as seconds."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text(f"onset\tduration\ttier\tlabel\n{value}\t1\tspeech\thi\n")
    assert [(f.line, f.message) for f in check_dataset(root).findings] == [
        (2, f"onset {value!r} is not a number of seconds")
    ]


@pytest.mark.parametrize("value", ["0", "1.5", "-0.25", ".5", "2.", "2e-3", "1E+2"])
def test_events_times_written_as_decimals_pass(tmp_path, value):
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text(f"onset\tduration\ttier\tlabel\n{value}\t{value.lstrip('-')}\tsp\thi\n")
    assert check_dataset(root).findings == []


def test_a_duration_may_be_not_available_as_in_bids(tmp_path):
    """BIDS writes an event without a meaningful duration as `n/a`; the check refused it."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text("onset\tduration\ttier\tlabel\n1.5\tn/a\tgesture\tpoint\nn/a\t1\ta\tb\n")
    assert [(f.line, f.message) for f in check_dataset(root).findings] == [
        (3, "onset 'n/a' is not a number of seconds"),
    ]


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        (
            "Onset\tduration\ttier \tlabel",
            "the header has 'Onset', 'tier ': column names are lowercase, without blanks",
        ),
        (
            "onset,duration,tier,label",
            "the header is a single cell: separate the columns with tabs, not , or ;",
        ),
    ],
)
def test_a_header_that_nearly_has_the_pivot_columns_says_what_it_has(tmp_path, header, hint):
    """`Onset`, `tier ` or a comma-separated header were only `missing pivot column(s)`."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text(header + "\n")
    (finding,) = check_dataset(root).findings
    assert finding.message.split("; ", 1)[1] == hint


def test_a_pivot_column_twice_is_an_error(tmp_path):
    """The first `onset` of two was checked, the other ignored: tools may read either."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text("onset\tduration\ttier\tlabel\tonset\n1\t1\ta\tb\tlate\n")
    assert [(f.line, f.message.split(",")[0]) for f in check_dataset(root).findings] == [
        (1, "pivot column(s) onset appear more than once in the header"),
    ]


def test_a_stream_id_twice_in_a_session_is_an_error(tmp_path):
    """str-cam1 under audio/ and video/ passed: one timebase map then named two streams."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    raw = root / "sessions" / "ses-01" / "raw"
    for stream in ("video/str-cam1", "gaze/str-CAM2"):
        (raw / stream).mkdir(parents=True)
        (raw / stream / f"{stream.split('/')[1]}_stream.yaml").write_text("rate: 30\n")
    report = check_dataset(root)
    assert [(f.severity, f.path, f.message.split(";")[0]) for f in report.findings] == [
        ("error", "sessions/ses-01/raw/gaze/str-CAM2", "the same stream id as raw/audio/str-cam2"),
        ("error", "sessions/ses-01/raw/video/str-cam1", "the same stream id as raw/audio/str-cam1"),
        (
            "warning",
            "sessions/ses-01/derived/sync",
            "stream str-CAM2 has no timebase_maps/str-CAM2_timebase_map.json",
        ),
    ]


def test_layout_warnings(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    ses = root / "sessions" / "ses-01"
    (root / "sessions" / "session2").mkdir()
    (root / "sessions" / "notes.txt").write_text("x")
    (ses / "ses-01_session.yaml").unlink()
    (ses / "raw" / "audio" / "str-cam2" / "str-cam2_stream.yaml").unlink()
    (ses / "raw" / "eeg" / "str-e1").mkdir(parents=True)
    (ses / "raw" / "eeg" / "str-e1" / "str-e1_stream.yaml").write_text("rate: 500\n")
    (ses / "raw" / "audio" / "camera3").mkdir()
    report = check_dataset(root)
    assert report.errors == 0
    messages = [(f.path, f.message.split(";")[0]) for f in report.findings]
    assert messages == [
        ("sessions/notes.txt", "a file directly in sessions/"),
        ("sessions/ses-01", "ses-01_session.yaml is missing (the session's metadata)"),
        ("sessions/ses-01/raw/audio/camera3", "stream folders are named str-<id>"),
        ("sessions/ses-01/raw/audio/str-cam2", "str-cam2_stream.yaml is missing"),
        ("sessions/ses-01/raw/eeg", "unknown stream type"),
        (
            "sessions/ses-01/derived/sync",
            "stream str-e1 has no timebase_maps/str-e1_timebase_map.json",
        ),
        ("sessions/session2", "session folders are named ses-<id> (letters and digits)"),
    ]


def test_cli_exit_codes_and_json(tmp_path):
    good = make_dataset(tmp_path / "good")
    ok = subprocess.run([MDIVICOM, "dataset", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0
    assert ok.stdout.strip() == f"{good}: 2 session(s), 4 stream(s), 0 error(s), 0 warning(s)"
    (good / "dataset_manifest.yaml").unlink()
    bad = subprocess.run(
        [MDIVICOM, "dataset", "check", str(good), "--json"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["errors"] == 1 and report["findings"][0]["severity"] == "error"
    missing = subprocess.run(
        [MDIVICOM, "dataset", "check", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_not_a_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        check_dataset(tmp_path / "missing")


def check_without_root_powers(*args):
    """`mdivicom dataset check` with the capabilities that let root read anything dropped,
    so permission bits apply as they do for a curator's own account."""
    return cli_without_dac("dataset", "check", *args, timeout=60)


def test_folders_that_cannot_be_read_are_findings_not_crashes(tmp_path):
    """An unlistable folder was an internal error (PermissionError), and a folder that
    could be searched but not listed hid its events.tsv from the check without a word."""
    root = make_dataset(tmp_path / "ds")
    locked = root / "sessions" / "ses-01" / "raw" / "audio"
    unsearchable = root / "sessions" / "ses-02" / "derived"
    locked.chmod(0)
    unsearchable.chmod(0o644)
    try:
        done = check_without_root_powers(str(root), "--json")
    finally:
        locked.chmod(0o755)
        unsearchable.chmod(0o755)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(f["severity"], f["path"], f["message"].split(";")[0]) for f in report["findings"]] == [
        (
            "error",
            "sessions/ses-01/raw/audio",
            "cannot be listed (Permission denied), so nothing in it was checked",
        ),
        ("error", "sessions/ses-02/derived/sync", "cannot be looked at (Permission denied)"),
        ("error", "sessions/ses-02/derived/annotations", "cannot be looked at (Permission denied)"),
    ]


def test_a_name_too_long_for_its_sidecar_is_a_finding(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    session = root / "sessions" / ("ses-" + "a" * 246)
    session.mkdir()
    report = check_dataset(root)
    assert [(f.severity, f.path, f.message) for f in report.findings][:1] == [
        (
            "error",
            f"sessions/{session.name}/{session.name}_session.yaml",
            "cannot be looked at (File name too long); shorten the names on its path",
        )
    ]


def test_names_that_are_not_utf8_or_hold_control_characters(tmp_path):
    """A name that is not UTF-8 made --json an internal error; a newline in a name
    printed a second, forged finding line."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    os.mkdir(os.fsencode(root / "sessions") + b"/ses-\xff")
    (root / "sessions" / "ses-x\nerror: forged").mkdir()
    as_json = subprocess.run(
        [MDIVICOM, "dataset", "check", str(root), "--json"], capture_output=True, text=True
    )
    assert as_json.returncode == 0, as_json.stderr
    paths = [f["path"] for f in json.loads(as_json.stdout)["findings"]]
    assert paths == ["sessions/ses-x\nerror: forged", "sessions/ses-\\xff"]
    text = subprocess.run([MDIVICOM, "dataset", "check", str(root)], capture_output=True, text=True)
    assert text.stdout.splitlines()[:2] == [
        "warning: sessions/ses-x\\nerror: forged: session folders are named ses-<id> "
        "(letters and digits)",
        "warning: sessions/ses-\\xff: session folders are named ses-<id> (letters and digits)",
    ]


def test_entries_of_the_wrong_kind_are_named_as_such(tmp_path):
    """A manifest that is a folder, or sessions/ that is a file, was reported missing; a
    link to nothing in sessions/ was called a file."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    (root / "dataset_manifest.yaml").unlink()
    (root / "dataset_manifest.yaml").mkdir()
    (root / "sessions" / "ses-02").symlink_to(tmp_path / "gone")
    report = check_dataset(root)
    assert [(f.severity, f.path, f.message) for f in report.findings] == [
        ("error", "dataset_manifest.yaml", "is a folder, not a YAML file"),
        (
            "warning",
            "sessions/ses-02",
            f"a symbolic link to {tmp_path / 'gone'}, which does not exist",
        ),
    ]
    other = make_dataset(tmp_path / "other", sessions=1)
    shutil.rmtree(other / "sessions")
    (other / "sessions").write_text("ses-01\n")
    assert [(f.path, f.message.split(";")[0]) for f in check_dataset(other).findings] == [
        ("sessions", "is a file, not a folder"),
    ]


def test_files_are_read_as_utf8_with_or_without_a_byte_order_mark(tmp_path):
    """A spreadsheet's byte order mark became part of the first column's name
    (`missing pivot column(s) onset`) and failed every JSON file."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    ses = root / "sessions" / "ses-01"
    bom = b"\xef\xbb\xbf"
    events = ses / "derived" / "annotations" / "events.tsv"
    events.write_bytes(bom + b"onset\tduration\ttier\tlabel\r\n0.5\t1\tspeech\thi\r\n")
    timebase = ses / "derived" / "sync" / "timebase_maps" / "str-cam1_timebase_map.json"
    timebase.write_bytes(bom + timebase.read_bytes())
    manifest = root / "dataset_manifest.yaml"
    manifest.write_bytes(bom + manifest.read_bytes())
    assert check_dataset(root).findings == []


def test_a_file_that_cannot_be_read_is_one_finding(tmp_path):
    """An events.tsv that was not UTF-8 or could not be opened was reported twice, the
    second time as `empty`, and the decoding error gave a byte offset, not a line."""
    root = make_dataset(tmp_path / "ds", sessions=2)
    latin1 = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    latin1.write_bytes(
        "onset\tduration\ttier\tlabel\n0\t1\ta\tb\n1\t1\ta\tcafé\n".encode("latin-1")
    )
    gone = root / "sessions" / "ses-02" / "derived" / "annotations" / "events.tsv"
    gone.unlink()
    gone.symlink_to(tmp_path / "nowhere.tsv")
    folder = root / "sessions" / "ses-02" / "derived" / "events.tsv"
    folder.mkdir()
    assert [(f.path, f.line, f.message.split(";")[0]) for f in check_dataset(root).findings] == [
        (
            "sessions/ses-01/derived/annotations/events.tsv",
            3,
            "not UTF-8 text: byte 0xe9 is not UTF-8 (a file saved as Latin-1 or Windows-1252?)",
        ),
        (
            "sessions/ses-02/derived/annotations/events.tsv",
            None,
            "cannot be read (No such file or directory)",
        ),
        ("sessions/ses-02/derived/events.tsv", None, "is a folder, not a file"),
    ]


def test_empty_yaml_and_json_constants_that_are_not_json(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    (root / "dataset_manifest.yaml").write_text("")
    maps = root / "sessions" / "ses-01" / "derived" / "sync" / "timebase_maps"
    (maps / "str-cam1_timebase_map.json").write_text('{"offset_s": NaN}')
    assert [(f.path, f.message) for f in check_dataset(root).findings] == [
        ("dataset_manifest.yaml", "empty; expected a mapping of keys to values (key: value)"),
        (
            "sessions/ses-01/derived/sync/timebase_maps/str-cam1_timebase_map.json",
            "not valid JSON: NaN is not a JSON number; use null",
        ),
    ]


def test_an_unclosed_quote_does_not_hide_the_rows_after_it(tmp_path):
    """A '"' that opened a cell and was never closed swallowed every later row into that
    cell: their bad durations went unreported, and the check passed."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text(
        "onset\tduration\ttier\tlabel\n"
        '1\t1\tspeech\t"hello\n'
        "2\tlong\tspeech\thi\n"
        "3\tshort\tspeech\tyo\n"
    )
    (finding,) = check_dataset(root).findings
    assert (finding.line, finding.message.split(":")[0]) == (
        2,
        "a quoted cell starting on this line runs to line 4",
    )


def test_rows_after_a_quoted_cell_over_two_lines_keep_their_line_numbers(tmp_path):
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text(
        'onset\tduration\ttier\tlabel\n1\t1\tspeech\t"two\nlines"\n\n2\tlong\tspeech\t"a\tb"\n'
    )
    assert [(f.line, f.message.split(":")[0]) for f in check_dataset(root).findings] == [
        (2, "a quoted cell starting on this line runs to line 3"),
        (5, "duration 'long' is not a number of seconds"),
    ]


def test_the_text_report_shows_ten_findings_per_file_and_counts_the_rest(tmp_path):
    """An events.tsv wrong in every row printed one line per row (10 000 rows, 10 000
    lines), burying every other finding."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    events = root / "sessions" / "ses-01" / "derived" / "annotations" / "events.tsv"
    events.write_text("onset\tduration\ttier\tlabel\n" + "1\tlong\ta\tb\n" * 500)
    (root / "sessions" / "ses-01" / "ses-01_session.yaml").unlink()
    text = subprocess.run([MDIVICOM, "dataset", "check", str(root)], capture_output=True, text=True)
    lines = text.stdout.splitlines()
    assert text.returncode == 1
    assert len(lines) == 10 + 1 + 1 + 1  # ten of the table's, the sidecar, the note, the total
    assert lines[-2] == (
        "note: sessions/ses-01/derived/annotations/events.tsv: 490 more finding(s) not shown; "
        "--json lists every one"
    )
    assert lines[-1].endswith("500 error(s), 1 warning(s)")
    as_json = subprocess.run(
        [MDIVICOM, "dataset", "check", str(root), "--json"], capture_output=True, text=True
    )
    assert len(json.loads(as_json.stdout)["findings"]) == 501


def test_a_fifo_named_like_a_dataset_file_is_refused_unread(tmp_path):
    """A FIFO called events.tsv hung the check until something wrote to it; a FIFO as
    a sidecar was `an other`."""
    root = make_dataset(tmp_path / "ds", sessions=1)
    ses = root / "sessions" / "ses-01"
    events = ses / "derived" / "annotations" / "events.tsv"
    events.unlink()
    os.mkfifo(events)
    sidecar = ses / "raw" / "audio" / "str-cam1" / "str-cam1_stream.yaml"
    sidecar.unlink()
    os.mkfifo(sidecar)
    done = subprocess.run(
        [MDIVICOM, "dataset", "check", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    assert [(f["path"], f["message"]) for f in json.loads(done.stdout)["findings"]] == [
        (
            "sessions/ses-01/raw/audio/str-cam1/str-cam1_stream.yaml",
            "is a special file (a FIFO, socket or device), not a YAML file",
        ),
        (
            "sessions/ses-01/derived/annotations/events.tsv",
            "is a special file (a FIFO, socket or device), not a file",
        ),
    ]
