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
from mdivicomtools.records import store
from mdivicomtools.records.store import find_record, load_records

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


@pytest.fixture
def reads(monkeypatch):
    """The record files read whole, in order."""
    seen: list[str] = []
    real = store.read_record

    def counting(path: Path):
        seen.append(path.stem)
        return real(path)

    monkeypatch.setattr(store, "read_record", counting)
    return seen


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
