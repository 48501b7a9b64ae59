"""`runs list --plugin/--status/--since/--last`: narrowing a long history of runs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import get_args

import pytest

from mdivicomtools import run_batch, run_plugin
from mdivicomtools.cli.runs import STATUSES
from mdivicomtools.model.run import Status
from mdivicomtools.records.listfilter import BadSince, RunFilter, parse_since, started

FAIL = "def run(*a, **k):\n    raise RuntimeError('kaput')\n"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def history(site, dataset, tmp_path):
    """One --out with runs of three plugins, one of them failed: (out, [run ids, oldest first])."""
    site.plugin("alpha")
    site.plugin("beta", run_source=FAIL)
    site.plugin("gamma", publisher="other")
    out = tmp_path / "out"
    ids = [run_plugin("alpha", dataset=dataset, out=out).run_id]
    ids.append(run_plugin("beta", dataset=dataset, out=out).run_id)
    ids.append(run_plugin("alpha", dataset=dataset, out=out, overwrite=True).run_id)
    ids.append(run_plugin("other/gamma", dataset=dataset, out=out).run_id)
    return out, ids


def listed(site, *args: str) -> list[dict]:
    result = site.cli("runs", "list", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_by_plugin_id_or_reference_any_of_several(site, history):
    out, ids = history
    assert [r["run_id"] for r in listed(site, str(out), "--plugin", "alpha")] == [ids[0], ids[2]]
    assert [r["run_id"] for r in listed(site, str(out), "--plugin", "other/gamma")] == [ids[3]]
    assert listed(site, str(out), "--plugin", "lab/gamma") == []  # the publisher counts
    both = listed(site, str(out), "--plugin", "beta", "--plugin", "gamma")
    assert [r["run_id"] for r in both] == [ids[1], ids[3]]


def test_by_status_and_together_with_plugin(site, history):
    out, ids = history
    assert [r["run_id"] for r in listed(site, str(out), "--status", "failed")] == [ids[1]]
    assert listed(site, str(out), "--status", "failed", "--plugin", "alpha") == []
    table = site.cli("runs", "list", str(out), "--status", "succeeded", "--plugin", "alpha")
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [ids[0], ids[2]]


def test_last_keeps_the_newest_still_oldest_first(site, history):
    out, ids = history
    assert [r["run_id"] for r in listed(site, str(out), "--last", "2")] == ids[2:]
    assert [r["run_id"] for r in listed(site, str(out), "--last", "1", "--plugin", "alpha")] == [
        ids[2]
    ]
    assert [r["run_id"] for r in listed(site, str(out), "--last", "99")] == ids


def test_since_a_records_start_time_or_an_age(site, history):
    out, ids = history
    runs = listed(site, str(out))
    third = runs[2]["started_at"]  # as the record holds it: 2026-11-29T03:00:00.123Z
    assert [r["run_id"] for r in listed(site, str(out), "--since", third)] == ids[2:]
    assert [r["run_id"] for r in listed(site, str(out), "--since", "1h")] == ids
    assert listed(site, str(out), "--since", "2999-01-01") == []


def test_no_match_says_how_many_runs_there_are(site, history):
    out, _ = history
    result = site.cli("runs", "list", str(out), "--plugin", "nosuch")
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr == f"No run of the 4 under {out} matches the filters.\n"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "yesterday"], "Error: --since 'yesterday' is not a time; give an age"),
        (["--status", "ok"], "Invalid value for '--status': 'ok' is not one of"),
        (["--last", "0"], "Invalid value for '--last': 0 is not in the range x>=1"),
    ],
)
def test_a_bad_filter_is_exit_2_naming_it(site, history, args, said):
    out, _ = history
    result = site.cli("runs", "list", str(out), *args)
    assert result.returncode == 2 and said in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_batch_lists_the_sessions_whose_latest_run_matches(site, tmp_path):
    site.plugin("alpha")
    site.plugin(
        "picky",
        run_source="def run(dataset_dir, *a, **k):\n"
        "    if dataset_dir.endswith('ses-02'):\n"
        "        raise RuntimeError('kaput')\n",
    )
    study = tmp_path / "study"
    for name in ("ses-01", "ses-02", "ses-03"):
        (study / "sessions" / name).mkdir(parents=True)
        (study / "sessions" / name / "a.txt").write_text(name)
    out = tmp_path / "out"
    run_batch("alpha", dataset=study, out=out, sessions="ses-*", jobs=1)
    run_batch("picky", dataset=study, out=out, sessions="ses-*", jobs=1)
    failed = listed(site, str(out), "--status", "failed")
    assert [(r["session"], r["plugin"]) for r in failed] == [("ses-02", "lab/picky")]
    alpha = listed(site, str(out), "--plugin", "alpha")
    assert [r["session"] for r in alpha] == ["ses-01", "ses-02", "ses-03"]
    newest = listed(site, str(out), "--last", "1")
    assert [(r["session"], r["plugin"]) for r in newest] == [("ses-03", "lab/picky")]
    none = site.cli("runs", "list", str(out), "--status", "interrupted")
    assert none.stderr == f"No line of the 6 under {out} matches the filters.\n"


def test_since_takes_ages_dates_times_and_run_id_stamps():
    assert parse_since("90m", NOW) == datetime(2026, 11, 29, 10, 30, tzinfo=timezone.utc)
    assert parse_since("2w", NOW) == datetime(2026, 11, 15, 12, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_since("2026-11-01T14:30", NOW) == datetime(
        2026, 11, 1, 14, 30, tzinfo=timezone.utc
    )
    assert parse_since("2026-11-01T14:30+01:00", NOW) == datetime(
        2026, 11, 1, 13, 30, tzinfo=timezone.utc
    )
    assert parse_since("20261101T143000Z", NOW) == datetime(
        2026, 11, 1, 14, 30, tzinfo=timezone.utc
    )
    with pytest.raises(BadSince, match="is not a time"):
        parse_since("3 days ago", NOW)


def test_since_far_out_of_range_keeps_every_run_or_none_instead_of_crashing(site, history):
    """`--since 99999999d` and a date whose offset carries it past year 1 or 9999 were
    `Error: internal error (OverflowError: date value out of range)`; they stand for
    the first or last moment there is."""
    out, ids = history
    first = datetime.min.replace(tzinfo=timezone.utc)
    for far_back in ("999999999d", "99999999999w", "0001-01-01T00:00+01:00"):
        assert parse_since(far_back, NOW) == first
        assert [r["run_id"] for r in listed(site, str(out), "--since", far_back)] == ids
    assert parse_since("9999-12-31T23:59-01:00", NOW) == datetime.max.replace(tzinfo=timezone.utc)
    assert listed(site, str(out), "--since", "9999-12-31T23:59-01:00") == []


def test_since_takes_a_run_id_as_runs_list_shows_it(site, history):
    """The RUN_ID column copied whole (`20261101T143000Z_3f2a9b1c`) was `not a time`;
    only its stamp was taken."""
    out, ids = history
    assert parse_since("20261101T143000Z_3f2a9b1c", NOW) == datetime(
        2026, 11, 1, 14, 30, tzinfo=timezone.utc
    )
    # the runs from the second the id names on, the run itself among them
    kept = listed(site, str(out), "--since", ids[2])
    assert {ids[2], ids[3]} <= {r["run_id"] for r in kept}
    stamp = parse_since(ids[2][:16], NOW)
    assert all(started(r["started_at"]) >= stamp for r in kept)


def test_last_goes_by_the_moment_and_counts_a_damaged_start_as_the_oldest():
    """`--last` sorted the start times as text: a record whose `started_at` is no time
    (`garbage` sorts after every `2026-...`) took the newest run's place, and a
    start written with an offset sorted by its local hour."""
    items = [
        ("old", "2026-11-01T10:00:00.000Z"),
        ("damaged", "garbage"),
        ("newest", "2026-11-02T07:30:00-02:00"),  # 09:30 UTC: after the next one
        ("earlier", "2026-11-02T09:00:00.000Z"),
    ]
    kept = RunFilter(last=2).keep(
        items, plugin=lambda i: "x", status=lambda i: "ok", started_at=lambda i: i[1]
    )
    assert [name for name, _ in kept] == ["newest", "earlier"]  # in the list's order


def test_the_status_choices_are_the_record_statuses():
    assert set(STATUSES) == set(get_args(Status))
