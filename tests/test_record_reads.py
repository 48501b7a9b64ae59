"""How much of a large --out a command reads: a lab's run root holds thousands of
records, each listing every output file of its run.

The tests count the record files read and look at what stays in memory; they
never time anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdivicomtools import run_plugin, verify_out
from mdivicomtools.batch import summary as batch_summary
from mdivicomtools.batch.session import SessionResult
from mdivicomtools.batch.summary import BatchSummary, find_summary, load_summaries
from mdivicomtools.common.jsonio import write_json_atomic
from mdivicomtools.records import owner, store
from mdivicomtools.records.owner import output_owner
from mdivicomtools.records.store import find_record, load_records
from mdivicomtools.runner import debris

WRITE = """
import pathlib
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    for i in range(int(config.get("files", 3))):
        pathlib.Path(out_dir, f"table-{i}.csv").write_text("a,b\\n1,2\\n")
    return {"ok": True}
"""

HISTORY = 40


def _copies(record_path: Path, count: int) -> list[str]:
    """`count` copies of a real record beside it, each an older run of its own id and
    start time (a lab's history), oldest first; their ids."""
    data = json.loads(record_path.read_text())
    ids = []
    for n in range(count):
        run_id = f"20240101T{n // 60:02d}{n % 60:02d}00Z_{n:08x}"
        started = f"2024-01-01T{n // 60:02d}:{n % 60:02d}:00.000Z"
        data.update(run_id=run_id, started_at=started)
        (record_path.parent / f"{run_id}.json").write_text(json.dumps(data))
        ids.append(run_id)
    return ids


@pytest.fixture
def history(site, dataset, tmp_path):
    """A run root with one real run and HISTORY older copies of its record: (out, ids)."""
    site.plugin("writer", run_source=WRITE)
    out = tmp_path / "out"
    record = run_plugin("writer", dataset=dataset, out=out, config={"files": 3})
    assert record.status == "succeeded"
    ids = _copies(out / "_runs" / f"{record.run_id}.json", HISTORY)
    return out, [*ids, record.run_id]


def _calls_by_file(monkeypatch, module, name: str) -> list[str]:
    """Replace `module.name` (a function of one path) by one that notes each file's stem."""
    seen: list[str] = []
    real = getattr(module, name)

    def counting(path: Path):
        seen.append(path.stem)
        return real(path)

    monkeypatch.setattr(module, name, counting)
    return seen


@pytest.fixture
def reads(monkeypatch):
    """The record files read whole, in order."""
    return _calls_by_file(monkeypatch, store, "read_record")


def test_listing_keeps_headers_not_whole_records(history):
    out, ids = history
    records, problems = load_records(out)
    assert problems == []
    assert [r.run_id for r in records] == ids
    # the outputs of every run stayed on disk: a whole record of each held them all
    assert not any(hasattr(r, "outputs") for r in records)


def test_a_run_named_by_its_whole_id_is_the_one_record_read(history, reads):
    out, ids = history
    record = find_record(out, ids[3])
    assert record.run_id == ids[3]
    assert len(record.outputs) == 3
    assert reads == [ids[3]]


def test_latest_reads_every_record_once_and_the_chosen_one_again(history, reads):
    out, ids = history
    record = find_record(out, "latest")
    assert record.run_id == ids[-1]
    assert len(record.outputs) == 3
    assert sorted(reads) == sorted([*ids, ids[-1]])


def test_verify_reads_each_record_once_and_the_verified_one_again(history, reads):
    out, ids = history
    [report] = verify_out(out, "latest")
    assert report.ok, report
    assert sorted(reads) == sorted([*ids, ids[-1]])


def test_a_listed_record_that_became_unreadable_is_named(history, monkeypatch):
    out, ids = history
    real = store._read_all

    def then_damaged(run_out_dir: Path):
        found = real(run_out_dir)
        (out / "_runs" / f"{ids[-1]}.json").write_text("{")
        return found

    monkeypatch.setattr(store, "_read_all", then_damaged)
    with pytest.raises(store.RecordUnreadable, match=f"{ids[-1]}.json' cannot be read"):
        find_record(out, "latest")


@pytest.fixture
def views(monkeypatch):
    """The record files `output_owner` reads, in order."""
    return _calls_by_file(monkeypatch, owner, "_view")


def test_the_owner_of_an_output_is_found_in_the_newest_records(history, views):
    out, ids = history
    assert output_owner(out, "writer") == ("lab", ids[-1])
    assert views == [ids[-1]]


def test_the_owner_search_passes_over_newer_runs_of_other_plugins(history, views):
    out, ids = history
    newest = json.loads((out / "_runs" / f"{ids[-1]}.json").read_text())
    others = []
    for n in range(3):
        run_id = f"20991231T00000{n}Z_0000000{n}"
        other = dict(newest, run_id=run_id, started_at=f"2099-12-31T00:00:0{n}.000Z")
        other["plugin"] = dict(newest["plugin"], id="other")
        (out / "_runs" / f"{run_id}.json").write_text(json.dumps(other))
        others.append(run_id)
    assert output_owner(out, "writer") == ("lab", ids[-1])
    assert views == [*reversed(others), ids[-1]]


def test_within_one_second_the_later_start_owns_the_output(history, views):
    out, ids = history
    data = json.loads((out / "_runs" / f"{ids[-1]}.json").read_text())
    # ids of one second sort by their random part, not by when the runs started
    for run_id, started in (
        ("20991231T000000Z_ffffffff", "2099-12-31T00:00:00.100Z"),
        ("20991231T000000Z_00000000", "2099-12-31T00:00:00.900Z"),
    ):
        (out / "_runs" / f"{run_id}.json").write_text(
            json.dumps(dict(data, run_id=run_id, started_at=started))
        )
    assert output_owner(out, "writer") == ("lab", "20991231T000000Z_00000000")
    # and the older seconds are not read
    assert views == ["20991231T000000Z_ffffffff", "20991231T000000Z_00000000"]


def test_a_run_into_a_long_history_reads_only_the_newest_records(site, history, dataset, views):
    out, ids = history
    record = run_plugin("writer", dataset=dataset, out=out, overwrite=True)
    assert record.status == "succeeded"
    # the check before the run and again under the lock: the newest records each time,
    # none of the history before them
    assert views.count(ids[-1]) == 2
    assert set(views) <= {ids[-1], record.run_id}


def _summaries(out: Path, count: int, sessions: int = 0) -> list[str]:
    """`count` batch summaries of `sessions` sessions each under `out`, one a minute,
    oldest first; their ids."""
    ids = []
    for n in range(count):
        batch_id = f"20240101T{n // 60:02d}{n % 60:02d}00Z_{n:08x}"
        started = f"2024-01-01T{n // 60:02d}:{n % 60:02d}:00.000Z"
        summary = BatchSummary(
            batch_id=batch_id,
            status="succeeded",
            plugin="lab/writer",
            plugin_version="1.0.0",
            config_sha256="0" * 64,
            dataset_dir="/data",
            out_dir=str(out),
            sessions_glob="ses-*",
            executor="local",
            scheduler=None,
            jobs=1,
            started_at=started,
            finished_at=started,
            duration_s=0.0,
            totals={"succeeded": sessions} if sessions else {},
            sessions=[
                SessionResult(session=f"ses-{n:03d}", status="succeeded") for n in range(sessions)
            ],
        )
        write_json_atomic(summary.path, summary)
        ids.append(batch_id)
    return ids


@pytest.fixture
def summaries_read(monkeypatch):
    """The ids of the batch summaries read, in order."""
    seen: list[str] = []
    real = batch_summary.decode_layout

    def counting(data: bytes, type, schema):
        found = real(data, type, schema)
        seen.append(found.batch_id)
        return found

    monkeypatch.setattr(batch_summary, "decode_layout", counting)
    return seen


def test_showing_one_batch_reads_its_summary_alone(tmp_path, summaries_read):
    out = tmp_path / "out"
    ids = _summaries(out, HISTORY)
    assert find_summary(out, "latest")[0].batch_id == ids[-1]
    assert find_summary(out, ids[7])[0].batch_id == ids[7]
    assert find_summary(out, ids[9][:-1])[0].batch_id == ids[9]
    assert summaries_read == [ids[-1], ids[7], ids[9]]


def test_the_latest_batch_is_the_later_start_within_the_newest_second(tmp_path):
    out = tmp_path / "out"
    _summaries(out, 3)
    for batch_id, started in (
        ("20991231T000000Z_ffffffff", "2099-12-31T00:00:00.100Z"),
        ("20991231T000000Z_00000000", "2099-12-31T00:00:00.900Z"),
    ):
        path = out / "_batches" / f"{batch_id}.json"
        data = json.loads(next(path.parent.glob("*.json")).read_text())
        path.write_text(json.dumps(dict(data, batch_id=batch_id, started_at=started)))
    (out / "_batches" / "20991231T000001Z_00000000.json").write_text("{")
    summary, problems = find_summary(out, "latest")
    assert summary.batch_id == "20991231T000000Z_00000000"
    [problem] = problems
    assert problem.startswith(f"skipped '{out / '_batches' / '20991231T000001Z_00000000.json'}'")


def test_the_table_of_batches_keeps_no_session(tmp_path):
    out = tmp_path / "out"
    ids = _summaries(out, 5, sessions=50)
    listed, problems = load_summaries(out, sessions=False)
    assert problems == []
    assert [(s.batch_id, s.counts(), s.sessions) for s in listed] == [
        (batch_id, "50 succeeded", []) for batch_id in ids
    ]
    # --json prints the summaries themselves, sessions and all
    assert [len(s.sessions) for s in load_summaries(out)[0]] == [50] * 5


def test_cleaning_reads_whole_only_the_records_left_running(history, monkeypatch):
    out, ids = history
    whole: list[str] = []
    real = debris.read_record

    def counting(path: Path):
        whole.append(path.stem)
        return real(path)

    monkeypatch.setattr(debris, "read_record", counting)
    assert debris.remove_dead_runs(out, every_record=True) == []
    assert whole == []
    path = out / "_runs" / f"{ids[5]}.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), status="running")))
    [cleaned] = debris.remove_dead_runs(out, every_record=True)
    assert cleaned.text == f"marked run {ids[5]} abandoned (its runner is gone)"
    assert whole == [ids[5], ids[5]]  # and once more under its plugin's lock
