"""`--executor slurm` on a real single-node Slurm (scripts/setup-slurm.sh starts one).

Kept few and small: each test submits at most two worker jobs, and CI runs all
of them in well under a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from engines import TEST_IMAGE, need_slurm, slurm_lock
from mdivicomtools.authoring.sampledata import make_sample_dataset as make_dataset
from mdivicomtools.batch.session import SessionResult
from pluginsite import MDIVICOM, count_wavs_manifest, interruptible

pytestmark = pytest.mark.slurm

SLURM_PLUGIN = """
import json, os, pathlib, time
def run(dataset_dir, out_dir, config, *, work_dir=None, dry_run=False):
    session = pathlib.Path(dataset_dir).name
    job = os.environ.get("SLURM_JOB_ID")
    started = pathlib.Path(config.get("started_dir", "/nonexistent"), session)
    if session in config.get("slow", []) and not started.exists():
        started.write_text(job or "")
        time.sleep(120)
    pathlib.Path(out_dir, "job.json").write_text(json.dumps(job))
    return {"session": session, "job": job, "pid": os.getpid()}
"""


@pytest.fixture
def slurm_site(site, tmp_path):
    """The plugin, a dataset of four sessions and a user config with a [slurm] section.

    Holds the machine's Slurm test lock for the test: the one node has two CPUs,
    and another suite's worker jobs at the same time (CI runs two Pythons at once)
    would queue these tests' jobs behind theirs and stretch every wait.
    """
    need_slurm()
    site.plugin("on-slurm", run_source=SLURM_PLUGIN)
    config = tmp_path / "config.toml"
    # interface lo: scheduler and workers are all on this machine
    config.write_text('[slurm]\ninterface = "lo"\ntime = "00:10:00"\nmem = "1GB"\n')
    with slurm_lock():
        yield site, make_dataset(tmp_path / "study", sessions=4), str(config)


def our_jobs(tmp_path: Path) -> list[str]:
    """This test's Slurm jobs still queued or running: those whose log goes under its
    tmp_path (a batch's worker logs go to <out>/_batches/slurm). The cluster is shared
    with other test runs (CI runs two Pythons at once), whose jobs are none of ours."""
    listed = subprocess.run(
        ["squeue", "-h", "-O", "JobID:|,Name:|,StdOut:"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    jobs = [line.split("|", 2) for line in listed.stdout.splitlines() if line.count("|") >= 2]
    return [
        f"{job} {name}"
        for job, name, stdout in jobs
        if name.startswith("mdivicom-") and stdout.startswith(f"{tmp_path}/")
    ]


def worker_processes(scheduler: str, wait_s: float = 30) -> list[str]:
    """Worker processes of this scheduler still running after up to `wait_s` seconds.

    A cancelled job leaves the queue at once, but Slurm ends its processes with
    SIGTERM and only after KillWait (30 s by default) with SIGKILL, and a loaded
    machine can take seconds to see a Dask worker out."""
    deadline = time.monotonic() + wait_s
    while True:
        found = subprocess.run(["pgrep", "-af", scheduler], capture_output=True, text=True)
        left = [line for line in found.stdout.splitlines() if "pgrep" not in line]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def slurm_run(site, study: Path, out: Path, config: str, *args: str) -> list[str]:
    return [
        MDIVICOM,
        "run",
        "on-slurm",
        "--dataset",
        str(study),
        "--out",
        str(out),
        "--sessions",
        "ses-*",
        "--executor",
        "slurm",
        "--jobs",
        "2",
        "--json",
        *args,
    ]


def records(session_out: Path) -> list[dict]:
    return sorted(
        (json.loads(p.read_text()) for p in (session_out / "_runs").glob("*.json")),
        key=lambda r: r["attempt"],
    )


def test_python_sessions_run_as_slurm_jobs(slurm_site, tmp_path):
    site, study, config = slurm_site
    out = tmp_path / "out"
    result = subprocess.run(
        slurm_run(site, study, out, config, "--slurm-partition", "debug"),
        env=site.env(MDIVICOM_CONFIG_FILE=config),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["executor"] == "slurm" and summary["totals"] == {"succeeded": 4}
    assert summary["slurm_partition"] == "debug"
    assert 1 <= len(summary["slurm_job_ids"]) <= 2
    for session in summary["sessions"]:
        (record,) = records(out / session["session"])
        job = record["host"]["slurm_job_id"]
        assert job in summary["slurm_job_ids"] and session["slurm_job_id"] == job
        assert record["result"]["job"] == job and record["attempt"] == 1
        assert json.loads((out / session["session"] / "on-slurm" / "job.json").read_text()) == job
        assert record["result"]["pid"] != os.getpid()
    logs = sorted(p.name for p in (out / "_batches" / "slurm").iterdir())
    assert any(name.endswith(".err") for name in logs), logs
    assert our_jobs(tmp_path) == []


@pytest.mark.engines
def test_container_sessions_on_slurm_workers(slurm_site, tmp_path, engine):
    site, study, config = slurm_site
    site.manifest("count.json", count_wavs_manifest(TEST_IMAGE))
    out = tmp_path / "out"
    result = site.cli(
        "run",
        "count-wavs",
        "--dataset",
        str(study),
        "--out",
        str(out),
        "--sessions",
        "ses-0[12]",
        "--backend",
        engine,
        "--executor",
        "slurm",
        "--jobs",
        "2",
        "--json",
        MDIVICOM_CONFIG_FILE=config,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"] == {"succeeded": 2}, summary["sessions"]
    for session in ("ses-01", "ses-02"):
        assert (out / session / "count-wavs" / "n").read_text().strip() == "2"
        (record,) = records(out / session)
        assert record["container"]["engine"] == engine
        assert record["host"]["slurm_job_id"] in summary["slurm_job_ids"]
    assert our_jobs(tmp_path) == []


def test_ctrl_c_cancels_every_worker_job(slurm_site, tmp_path):
    site, study, config = slurm_site
    started = tmp_path / "started"
    started.mkdir()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        slurm_run(
            site,
            study,
            out,
            config,
            "--config",
            json.dumps({"slow": ["ses-03", "ses-04"], "started_dir": str(started)}),
        ),
        env=site.env(MDIVICOM_CONFIG_FILE=config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow sessions never started"
        time.sleep(0.1)
    proc.send_signal(2)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert summary["status"] == "interrupted"
    by_status = {s["session"]: s["status"] for s in summary["sessions"]}
    assert by_status == {
        "ses-01": "succeeded",
        "ses-02": "succeeded",
        "ses-03": "interrupted",
        "ses-04": "interrupted",
    }
    assert our_jobs(tmp_path) == []
    assert worker_processes(summary["scheduler"]) == []
    by_session = {s["session"]: s for s in summary["sessions"]}
    for session in ("ses-03", "ses-04"):
        (record,) = records(out / session)
        assert record["status"] == "interrupted" and record["error"]["type"] == "WorkerLost"
        # the summary said "the batch was interrupted", as for a session never started
        assert by_session[session]["error"] == f"WorkerLost: {record['error']['message']}"
        # the job it ran in, which the plugin wrote down as it started
        job = (started / session).read_text()
        assert record["host"]["slurm_job_id"] == job == by_session[session]["slurm_job_id"]
        assert job in summary["slurm_job_ids"]
        assert by_session[session]["duration_s"] == record["duration_s"] > 0
        assert record["backend"]["name"] == "python"
        assert record["dataset_dir"] == str(study / "sessions" / session)
        assert not (out / session / "_staging").exists()
        assert not (out / session / "on-slurm").exists()


def cancel_the_slow_sessions_job(
    slurm_site, tmp_path: Path, slow: str, jobs: int = 2
) -> tuple[dict, str, Path, str]:
    """Run the four sessions with --retries 1, `slow` held back on its first try,
    and cancel the worker job running it once it started; the batch's summary,
    the cancelled job, the output folder and what the batch wrote on stderr."""
    site, study, config = slurm_site
    started = tmp_path / "started"
    started.mkdir()
    out = tmp_path / "out"
    command = slurm_run(
        site,
        study,
        out,
        config,
        "--retries",
        "1",
        "--config",
        json.dumps({"slow": [slow], "started_dir": str(started)}),
    )
    command[command.index("--jobs") + 1] = str(jobs)
    proc = subprocess.Popen(
        command,
        env=site.env(MDIVICOM_CONFIG_FILE=config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = started / slow
    deadline = time.monotonic() + 120
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{slow} never started"
        time.sleep(0.1)
    lost_job = marker.read_text()
    subprocess.run(["scancel", lost_job], check=True, timeout=20)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    return json.loads(stdout), lost_job, out, stderr


def test_a_cancelled_worker_job_is_retried(slurm_site, tmp_path):
    summary, lost_job, out, stderr = cancel_the_slow_sessions_job(slurm_site, tmp_path, "ses-02")
    assert summary["totals"] == {"succeeded": 4}
    assert summary["attempts"] == {"ses-01": 1, "ses-02": 2, "ses-03": 1, "ses-04": 1}
    (retried,) = [s for s in summary["sessions"] if s["session"] == "ses-02"]
    (earlier,) = retried["earlier"]
    assert earlier["attempt"] == 1 and earlier["status"] == "failed"
    # Slurm's reason, not Dask's "KilledWorker: Attempted to run task ..." (nor the
    # scheduler's own ERROR line about it on the terminal)
    cancelled = (
        f"WorkerLost: its worker job {lost_job} ended CANCELLED: it was cancelled "
        "(scancel, or the cluster's administrators)"
    )
    assert earlier["error"] == cancelled
    assert f"[mdivicom] ses-02 try 1 failed, retrying: {cancelled} (" in stderr
    assert "workers died while trying to run it" not in stderr
    assert lost_job in summary["slurm_job_ids"]
    first, second = records(out / "ses-02")
    assert (first["attempt"], first["status"], first["error"]["type"]) == (
        1,
        "failed",
        "WorkerLost",
    )
    assert first["run_id"] == earlier["run_id"]
    # the lost try names the job it ran in, and its real duration
    assert first["host"]["slurm_job_id"] == lost_job == earlier["slurm_job_id"]
    assert earlier["duration_s"] == first["duration_s"] > 0
    assert first["backend"]["name"] == "python"
    assert (second["attempt"], second["status"]) == (2, "succeeded")
    assert second["run_id"] == retried["run_id"]
    assert second["host"]["slurm_job_id"] != lost_job
    assert not (out / "ses-02" / "_staging").exists()
    assert our_jobs(tmp_path) == []


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("TIMEOUT", "ended TIMEOUT: its time limit (--slurm-time 00:05:00) ran out"),
        ("OUT_OF_MEMORY", "ended OUT_OF_MEMORY: it used more than its memory (--slurm-mem 1GB)"),
        ("NODE_FAIL", "ended NODE_FAIL: its node failed"),
        ("FAILED", "ended FAILED"),
    ],
)
def test_a_lost_worker_job_is_named_with_how_slurm_ended_it(monkeypatch, state, said):
    """A worker job whose --slurm-time ran out failed its session with Dask's
    `KilledWorker: Attempted to run task 'mdivicom-ses-1-...' on 1 different workers,
    ...` and a link to Dask's docs: nothing said the time limit was the cause."""
    from mdivicomtools.batch import slurm

    states = iter(["JobState=COMPLETING Reason=None", f"JobState={state} Reason=TimeLimit"])

    def scontrol(command):
        assert command == ["scontrol", "show", "job", "-o", "3401"]
        return subprocess.CompletedProcess(command, 0, f"JobId=3401 {next(states)}\n", "")

    monkeypatch.setattr(slurm, "_slurm", scontrol)
    settings = slurm.SlurmSettings(time="00:05:00", mem="1GB")
    lost = SessionResult(
        session="ses-1",
        status="failed",
        error="KilledWorker: Attempted to run task 'mdivicom-ses-1-1ad42ccf' ...",
        slurm_job_id="3401",
    )
    explained = slurm.explain_lost(lost, settings, wait_s=5)
    assert explained.error == f"WorkerLost: its worker job 3401 {said}"
    # a session that failed on its own, or a job Slurm no longer knows: left as it was
    failed = SessionResult(session="ses-2", status="failed", error="RuntimeError: x", run_id="r")
    assert slurm.explain_lost(failed, settings).error == "RuntimeError: x"
    monkeypatch.setattr(
        slurm, "_slurm", lambda c: subprocess.CompletedProcess(c, 1, "", "Invalid job id")
    )
    unknown = SessionResult(session="ses-1", status="failed", error="KilledWorker: x")
    unknown.slurm_job_id = "3401"
    assert slurm.explain_lost(unknown, settings).error == "KilledWorker: x"


def test_slurm_commands_missing_is_exit_2(site, tmp_path):
    site.plugin("on-slurm", run_source=SLURM_PLUGIN)
    study = make_dataset(tmp_path / "study", sessions=1)
    result = site.cli(
        "run",
        "on-slurm",
        "--dataset",
        str(study),
        "--out",
        str(tmp_path / "out"),
        "--sessions",
        "ses-*",
        "--executor",
        "slurm",
        PATH=str(tmp_path / "empty"),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: --executor slurm needs the Slurm commands, but sbatch, squeue, scancel is "
        "not on PATH; run on a Slurm login node (or load its module, e.g. `module load slurm`)"
    )
    assert not (tmp_path / "out").exists()


def test_slurm_controller_down_is_exit_2(slurm_site, tmp_path):
    site, study, config = slurm_site
    # a copy of the cluster's config naming a controller port nobody listens on
    conf = Path("/etc/slurm/slurm.conf").read_text()
    down = tmp_path / "slurm.conf"
    down.write_text(conf + "\nSlurmctldPort=9\n")
    result = site.cli(
        "run",
        "on-slurm",
        "--dataset",
        str(study),
        "--out",
        str(tmp_path / "out"),
        "--sessions",
        "ses-*",
        "--executor",
        "slurm",
        SLURM_CONF=str(down),
        MDIVICOM_CONFIG_FILE=config,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: --executor slurm: the Slurm controller does not answer")
    assert "check `sinfo`" in result.stderr
    assert not (tmp_path / "out").exists()
    assert our_jobs(tmp_path) == []


def test_slurm_options_override_the_config_section(tmp_path, monkeypatch):
    from mdivicomtools.batch.slurm import SlurmSettings, slurm_settings
    from mdivicomtools.errors import UsageError
    from mdivicomtools.model.options import BatchOptions

    config = tmp_path / "config.toml"
    config.write_text(
        '[slurm]\npartition = "compute"\nmem = "8GB"\ncpus = 2\ndirectives = ["--qos=normal"]\n'
    )
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    merged = slurm_settings(
        BatchOptions(sessions="*", slurm_partition="debug", slurm_directives=("--exclusive",))
    )
    assert merged == SlurmSettings(
        partition="debug",
        time="01:00:00",
        mem="8GB",
        cpus=2,
        directives=("--qos=normal", "--exclusive"),
    )
    config.write_text('[slurm]\npartiton = "debug"\n')
    with pytest.raises(UsageError) as typo:
        slurm_settings(BatchOptions(sessions="*"))
    assert "unknown key 'slurm.partiton'" in str(typo.value)
    assert "(did you mean 'partition'?)" in str(typo.value)
    assert "known keys: partition, time, mem, cpus, account, directives" in str(typo.value)


@pytest.mark.parametrize("mem", ["lots", "0GB"])
def test_a_memory_size_slurm_cannot_be_given_is_a_usage_error(tmp_path, monkeypatch, mem):
    """`--slurm-mem lots` was `internal error (ValueError: Could not interpret 'lots'
    as a byte unit)`, exit 1."""
    from mdivicomtools.batch.slurm import slurm_settings
    from mdivicomtools.errors import UsageError
    from mdivicomtools.model.options import BatchOptions

    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    with pytest.raises(UsageError) as given:
        slurm_settings(BatchOptions(sessions="*", slurm_mem=mem))
    assert str(given.value) == f"slurm_mem must be a size such as 4GB or 512MB, got {mem!r}"
    config.write_text(f'[slurm]\nmem = "{mem}"\n')
    with pytest.raises(UsageError) as configured:
        slurm_settings(BatchOptions(sessions="*"))
    assert str(configured.value).startswith("[slurm] mem must be a size")


@pytest.mark.parametrize("mem", ["1e3", "512B", "999KB"])
def test_a_memory_size_under_a_megabyte_is_a_usage_error(tmp_path, monkeypatch, mem):
    """`--slurm-mem 1e3` (under 1 KiB) was `internal error (TypeError: not all
    arguments converted during string formatting)` from dask-jobqueue's formatter."""
    from mdivicomtools.batch.slurm import slurm_settings
    from mdivicomtools.errors import UsageError
    from mdivicomtools.model.options import BatchOptions

    config = tmp_path / "config.toml"
    config.write_text(f'[slurm]\nmem = "{mem}"\n')
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    with pytest.raises(UsageError) as configured:
        slurm_settings(BatchOptions(sessions="*"))
    assert str(configured.value) == (
        f"[slurm] mem must be at least 1MB (Slurm counts memory in megabytes), got {mem!r}"
    )
    config.write_text("")
    with pytest.raises(UsageError) as given:
        slurm_settings(BatchOptions(sessions="*", slurm_mem=mem))
    assert str(given.value).startswith("slurm_mem must be at least 1MB")
    assert slurm_settings(BatchOptions(sessions="*", slurm_mem="1MB")).mem == "1MB"


def test_slurm_cpus_below_one_names_where_it_was_set(tmp_path, monkeypatch):
    """`[slurm] cpus = 0` in the user config was refused as `--slurm-cpus must be
    at least 1`, an option the user never gave."""
    from mdivicomtools.batch.slurm import slurm_settings
    from mdivicomtools.errors import UsageError
    from mdivicomtools.model.options import BatchOptions

    config = tmp_path / "config.toml"
    config.write_text("[slurm]\ncpus = 0\n")
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    with pytest.raises(UsageError) as configured:
        slurm_settings(BatchOptions(sessions="*"))
    assert str(configured.value) == "[slurm] cpus must be at least 1, got 0"
    with pytest.raises(UsageError) as given:
        slurm_settings(BatchOptions(sessions="*", slurm_cpus=-1))
    assert str(given.value) == "slurm_cpus must be at least 1, got -1"


def test_slurm_mem_that_is_not_a_size_is_exit_2(slurm_site, tmp_path):
    site, study, config = slurm_site
    out = tmp_path / "out"
    result = subprocess.run(
        slurm_run(site, study, out, config, "--slurm-mem", "lots"),
        env=site.env(MDIVICOM_CONFIG_FILE=config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: --slurm-mem must be a size such as 4GB or 512MB, got 'lots'"
    )
    assert not out.exists()


def test_a_failing_squeue_is_waited_out_for_a_while_then_named(monkeypatch):
    """With no worker connected, the batch asks squeue whether a worker job can still
    come; a controller restarting is waited out, a controller gone for good is not
    waited on for ever (the sessions left then fail as lost, saying why)."""
    import subprocess as sp

    from mdivicomtools.batch import slurm
    from mdivicomtools.batch.feeder import JOBS_ENDED

    answers: list[sp.CompletedProcess[str]] = []
    asked: list[list[str]] = []

    def fake_slurm(command):
        asked.append(command)
        return answers.pop(0)

    down = sp.CompletedProcess(
        [], 1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n"
    )
    monkeypatch.setattr(slurm, "_slurm", fake_slurm)
    now = [1000.0]
    watch = slurm.QueueWatch("mdivicom-abc123", clock=lambda: now[0])

    answers.append(sp.CompletedProcess([], 0, "4242\n", ""))
    assert watch() is None  # a worker job is queued
    assert asked[0][:4] == ["squeue", "-h", "--name", "mdivicom-abc123"]
    answers.append(down)
    assert watch() is None  # failing since now
    now[0] += slurm.SQUEUE_GRACE_S - 1
    answers.append(down)
    assert watch() is None  # still within the grace
    answers.append(sp.CompletedProcess([], 0, "4242\n", ""))
    assert watch() is None  # back: the grace starts again at the next failure
    answers.append(down)
    assert watch() is None
    now[0] += slurm.SQUEUE_GRACE_S
    answers.append(down)
    assert watch() == (
        "squeue failed for 300 s (squeue: error: Unable to contact slurm controller "
        "(connect failure)), so no worker job of this batch could be seen queued or running"
    )
    answers.append(sp.CompletedProcess([], 0, "", ""))
    assert watch() == JOBS_ENDED  # answered: nothing of this batch is queued or running


def test_a_worker_job_slurm_would_refuse_is_exit_2_before_anything(slurm_site, tmp_path):
    """Resources the node does not have: `sbatch --test-only` says so before any job
    is submitted (before, the refused submission left the batch waiting for ever)."""
    site, study, config = slurm_site
    out = tmp_path / "out"
    result = subprocess.run(
        slurm_run(site, study, out, config, "--slurm-directive=--gres=gpu:1"),
        env=site.env(MDIVICOM_CONFIG_FILE=config),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: --executor slurm: Slurm refuses the worker job (sbatch: error: Invalid "
        "generic resource (gres) specification); check the --slurm-* options and the "
        "[slurm] section of the config (`mdivicom config show`)"
    )
    assert not out.exists()
    assert our_jobs(tmp_path) == []


FAKE_SBATCH = """#!/bin/bash
# --test-only goes to the real sbatch; a real submission is refused or made to end at once
for arg; do [ "$arg" = --test-only ] && exec %(real)s "$@"; done
script="${@: -1}"
if [ %(mode)s = refuse ]; then
    echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy" >&2
    exit 1
fi
name=$(sed -n 's/^#SBATCH -J //p' "$script")
log=$(sed -n 's/^#SBATCH -o //p' "$script")
exec %(real)s -J "$name" -o "$log" -t 00:01:00 --mem=100M --wrap "exit 3"
"""


@pytest.mark.parametrize(
    "mode, error",
    [
        (
            "refuse",
            "WorkerLost: Slurm refused the worker jobs (sbatch: error: Batch job submission "
            "failed: Job violates accounting/QOS policy)",
        ),
        ("die", "WorkerLost: every worker job of this batch ended before the session"),
    ],
)
def test_worker_jobs_that_never_connect_fail_the_sessions_instead_of_a_wait(
    slurm_site, tmp_path, mode, error
):
    """A submission that passes the check but is refused (a QOS limit reached), or
    worker jobs that end before their worker connects (no Python on the node):
    the sessions fail as lost, saying why, instead of the batch waiting for ever."""
    import shutil

    site, study, config = slurm_site
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text(FAKE_SBATCH % {"real": shutil.which("sbatch"), "mode": mode})
    fake.chmod(0o755)
    out = tmp_path / "out"
    result = subprocess.run(
        slurm_run(site, study, out, config),
        env=site.env(
            MDIVICOM_CONFIG_FILE=config, PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"] == {"failed": 4}
    for session in summary["sessions"]:
        assert session["run_id"] is None and session["error"].startswith(error), session
    assert "Traceback" not in result.stderr
    assert our_jobs(tmp_path) == []


def test_with_every_worker_job_gone_the_waiting_sessions_are_retried(slurm_site, tmp_path):
    """One worker job, cancelled while it runs the first session: the sessions
    waiting for it never ran, fail as lost without waiting for ever, and the
    retry round runs all of them on a new worker job."""
    summary, lost_job, out, _ = cancel_the_slow_sessions_job(slurm_site, tmp_path, "ses-01", jobs=1)
    assert summary["totals"] == {"succeeded": 4}
    assert summary["attempts"] == {"ses-01": 2, "ses-02": 2, "ses-03": 2, "ses-04": 2}
    by_session = {s["session"]: s for s in summary["sessions"]}
    (first_try,) = by_session["ses-01"]["earlier"]
    assert first_try["status"] == "failed" and first_try["run_id"] is not None
    for session in ("ses-02", "ses-03", "ses-04"):
        (never_ran,) = by_session[session]["earlier"]
        assert never_ran["run_id"] is None, never_ran
        assert never_ran["error"].startswith("WorkerLost: every worker job of this batch ended")
        assert "no run record" in never_ran["error"]
        (record,) = records(out / session)
        assert (record["attempt"], record["status"]) == (2, "succeeded")
        assert record["host"]["slurm_job_id"] != lost_job
    assert our_jobs(tmp_path) == []
