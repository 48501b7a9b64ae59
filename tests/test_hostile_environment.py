"""`mdivicom` started where operators start it: cron, systemd, CI jobs, service accounts.

Closed standard streams, no home folder, a removed working folder, paths at the
file system's limits: each ends in one `Error:` line and a documented exit code,
or in the command doing its work, never in `internal error`.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from pluginsite import MDIVICOM, PluginSite


def _closing(*fds: int):
    """A preexec_fn that starts the command with `fds` closed (`>&-`, `2>&-`)."""

    def close() -> None:
        for fd in fds:
            os.close(fd)

    return close


@pytest.mark.parametrize("closed", [(1,), (2,), (0, 1, 2)], ids=["stdout", "stderr", "all"])
def test_a_run_with_closed_standard_streams_succeeds_with_exit_0(site, dataset, tmp_path, closed):
    site.plugin("greet")
    out = tmp_path / "out"
    done = subprocess.run(
        [MDIVICOM, "run", "greet", "--dataset", str(dataset), "--out", str(out)],
        env=site.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        preexec_fn=_closing(*closed),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (record,) = (out / "_runs").glob("*.json")
    assert json.loads(record.read_text())["status"] == "succeeded"


def test_a_batch_with_stderr_closed_runs_its_sessions(site, tmp_path):
    site.plugin("greet")
    study = tmp_path / "study"
    for session in ("ses-01", "ses-02"):
        (study / "sessions" / session).mkdir(parents=True)
        (study / "sessions" / session / "a.txt").write_text(session)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            MDIVICOM,
            "run",
            "greet",
            "--dataset",
            str(study),
            "--out",
            str(out),
            "--sessions",
            "ses-*",
        ],
        env=site.env(),
        capture_output=True,
        text=True,
        preexec_fn=_closing(2),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert "2 succeeded" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["_batches", "ses-01", "ses-02"]


def test_a_listing_with_stdout_closed_exits_0(site: PluginSite):
    site.plugin("greet")
    done = subprocess.run(
        [MDIVICOM, "plugins", "list"],
        env=site.env(),
        capture_output=True,
        text=True,
        preexec_fn=_closing(1),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
