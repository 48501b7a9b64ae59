"""benchmarks/sync_compare.py: the judge rules' quantities from two runs, and the
streams that moved between them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import sync_compare


def _row(stream: str, error: float, bound: float | None, status: str, drift_off=None):
    return {
        "seed": 7,
        "condition": "rt0.8 0dB 2cam 60s",
        "stream": stream,
        "errors": {"ours": error},
        "bound": bound,
        "status": status,
        "jumps": 0,
        "visible": None,
        "drift_off": drift_off,
        "drift_error": drift_off,
    }


def _run(
    path: Path,
    rows: list[dict],
    cpu: float,
    reference: str = "anywhere",
    chapters: float | None = None,
    sets: list[str] | None = None,
) -> Path:
    path.write_text(
        json.dumps(
            {
                "seeds": [7],
                "reference": reference,
                "surfaces": "flat",
                "long": False,
                "chapters": chapters,
                "sets": sets or [],
                "tools": ["ours"],
                "streams": rows,
                "sessions": [{"seed": 7, "condition": "rt0.8 0dB 2cam 60s", "cpu": {"ours": cpu}}],
            }
        )
    )
    return path


def test_a_silently_wrong_stream_made_doubtful_is_counted_and_listed(tmp_path, capsys):
    before = _run(
        tmp_path / "before.json",
        [
            _row("str-cam2", 3.467, 0.14, "ok", 0.3),
            _row("str-cam3", 0.010, 0.12, "ok", 12.0),
            _row("str-cam4", float("inf"), None, "failed"),
        ],
        10.0,
    )
    after = _run(
        tmp_path / "after.json",
        [
            _row("str-cam2", 3.455, 3.63, "doubtful", 0.3),
            _row("str-cam3", 0.011, 0.12, "ok", 12.1),  # the same place: not listed
            _row("str-cam4", float("inf"), None, "failed"),
        ],
        12.5,
    )
    assert sync_compare.main([str(before), str(after)]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("| 7 |")]
    assert listed == [
        "| 7 | rt0.8 0dB 2cam 60s | str-cam2 | 3.467 / 0.14 / ok VIOLATED / 0.3 "
        "| 3.455 / 3.63 / doubtful / 0.3 |"
    ]
    assert "1 of 3 streams moved" in out
    # within 0.5, within 2, median, worst, bound held, unwarned > 2 ms, warned, drifts, CPU
    assert f"| {before} | 1/3 | 1/3 | 3.467 | inf | 1/3 | 1 | 1 | 1/2 | 10.0 |" in out
    assert f"| {after} | 1/3 | 1/3 | 3.455 | inf | 2/3 | 0 | 2 | 1/2 | 12.5 |" in out


def test_runs_of_different_rooms_are_refused(tmp_path, capsys):
    rows = [_row("str-cam2", 0.01, 0.1, "ok")]
    before = _run(tmp_path / "before.json", rows, 1.0)
    after = _run(tmp_path / "after.json", rows, 1.0, reference="close")
    assert sync_compare.main([str(before), str(after)]) == 2
    assert "different rooms" in capsys.readouterr().err
    # the same rooms cut into chapter files are other recordings
    cut = _run(tmp_path / "cut.json", rows, 1.0, chapters=120)
    assert sync_compare.main([str(before), str(cut)]) == 2
    assert "--chapters" in capsys.readouterr().err


def test_runs_with_other_settings_are_compared_and_say_so(tmp_path, capsys):
    """The same rooms with another sync-audio setting are the same recordings (e.g.
    continuous_chapters, which moves statuses only): compared, the settings named."""
    before = _run(tmp_path / "before.json", [_row("str-cam2", 0.01, 0.1, "doubtful")], 1.0)
    after = _run(
        tmp_path / "after.json",
        [_row("str-cam2", 0.01, 0.1, "ok")],
        1.0,
        sets=["continuous_chapters=true"],
    )
    assert sync_compare.main([str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "# sync-audio settings: none -> continuous_chapters=true" in out.splitlines()
    assert "1 of 1 streams moved" in out
