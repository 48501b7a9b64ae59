"""Resources, named mounts, init and hardening on the real Docker Engine and Podman.

Each test runs once per engine (the `engine` fixture). What is checked is what
the tool inside the container sees: cgroup limits, /proc/self/status, a write
that the read-only root or mount refuses, and how fast a stop takes effect.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from containerkit import container_plugin, leftover_containers, run_on
from mdivicomtools.execution.container.runtime import LOG_RESENT_MARKER
from mdivicomtools.runner import run_plugin

pytestmark = pytest.mark.engines

#: cgroup v1 paths first (these machines), then the unified v2 names
LIMITS = (
    "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
    "2>/dev/null || cat /sys/fs/cgroup/cpu.max; "
    "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)
GROW_UNTIL_KILLED = "x=0123456789abcdef; while true; do x=$x$x; done"


def test_memory_limit_kills_with_a_clear_error(site, dataset, tmp_path, engine):
    container_plugin(site, "hog", GROW_UNTIL_KILLED, resources={"memory": "64m"})
    out = tmp_path / "out"
    result, record = run_on(site, engine, "hog", dataset, out)
    assert result.returncode == 1, result.stderr
    assert record["status"] == "failed"
    assert record["error"] == {"type": "OutOfMemory", "message": "out of memory (limit 64 MiB)"}
    assert record["container"]["oom_killed"] is True
    assert record["container"]["applied"]["memory"] == 64 * 1024**2
    assert leftover_containers(engine, record["run_id"]) == []


def test_a_pids_limit_reached_is_named_with_the_fix(site, dataset, tmp_path, engine):
    """A tool that cannot fork under its pids limit exits as it sees fit (`sh`: 2):
    the run said `ContainerFailed: the container exited with status 2`, nothing
    about the limit."""
    forks = "for i in $(seq 1 100); do sleep 30 & done; wait"
    container_plugin(site, "forker", forks, resources={"pids": 16})
    result, record = run_on(site, engine, "forker", dataset, tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert record["error"] == {
        "type": "TooManyProcesses",
        "message": "the container exited with status 2 after it could not start a process "
        "or thread (its log says 'Resource temporarily unavailable'): it hit its limit of "
        "16 processes; raise `resources.pids` in the plugin's manifest",
    }
    assert record["exit_code"] == 2 and record["container"]["applied"]["pids"] == 16
    assert leftover_containers(engine, record["run_id"]) == []


def test_an_eagain_that_was_no_fork_is_not_called_a_pids_limit(site, dataset, tmp_path, engine):
    """A tool that failed on a lock taken without waiting (Python's `flock(LOCK_NB)`
    says `BlockingIOError: [Errno 11] Resource temporarily unavailable`, as a
    non-blocking read does) under a pids limit was `TooManyProcesses: ... it hit its
    limit of 16 processes; raise resources.pids`, sending the user to a limit it
    never reached."""
    busy_lock = (
        "echo 'Traceback (most recent call last):' >&2; "
        "echo '  File \"/app/sync.py\", line 12, in <module>' >&2; "
        "echo '    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)' >&2; "
        "echo 'BlockingIOError: [Errno 11] Resource temporarily unavailable' >&2; "
        "exit 1"
    )
    container_plugin(site, "locked", busy_lock, resources={"pids": 16})
    result, record = run_on(site, engine, "locked", dataset, tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert record["error"] == {
        "type": "ContainerFailed",
        "message": "the container exited with status 1",
    }


def test_a_sigkill_that_was_no_oom_kill_says_so(site, dataset, tmp_path, engine):
    """Status 137 with no memory limit reached: `the container exited with status
    137` left the user to work out 128 + 9 and to wonder about memory."""
    container_plugin(site, "killed", "kill -9 $$")
    result, record = run_on(site, engine, "killed", dataset, tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert record["error"] == {
        "type": "ContainerFailed",
        "message": "the container exited with status 137 (killed by SIGKILL; the engine "
        "reports no out-of-memory kill)",
    }
    assert record["exit_code"] == 137 and record["container"]["oom_killed"] is False


def test_cpus_pids_and_memory_are_visible_inside(site, dataset, tmp_path, engine):
    container_plugin(site, "limits", "(" + LIMITS + ") > {out_dir}/limits", resources={"pids": 64})
    out = tmp_path / "out"
    result, record = run_on(
        site, engine, "limits", dataset, out, "--cpus", "0.5", "--memory", "256m"
    )
    assert result.returncode == 0, result.stderr
    values = (out / "limits" / "limits").read_text().split()
    if len(values) == 4:  # cgroup v1: quota, period, pids, memory
        quota, period, pids, memory = values
        assert int(quota) / int(period) == 0.5
    else:  # cgroup v2: "quota period", pids, memory
        quota, period, pids, memory = values
        assert int(quota) / int(period) == 0.5
    assert pids == "64" and int(memory) == 256 * 1024**2
    applied = record["container"]["applied"]
    assert (applied["cpus"], applied["pids"], applied["memory"]) == (0.5, 64, 256 * 1024**2)


def test_init_makes_a_timeout_prompt(site, dataset, tmp_path, engine):
    # without an init, `sh` as PID 1 ignores SIGTERM and the stop waits the whole grace
    container_plugin(site, "sleeper", "echo started; sleep 600", stop_grace_s=60)
    out = tmp_path / "out"
    started = time.monotonic()
    result, record = run_on(site, engine, "sleeper", dataset, out, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert result.returncode == 124, result.stderr
    assert record["status"] == "timed_out"
    assert record["container"]["applied"]["init"] is True
    assert record["container"]["applied"]["stop_grace_s"] == 60
    # SIGTERM reached the tool: far below the 60 s grace a SIGKILL would have needed
    assert elapsed < 30, elapsed
    assert leftover_containers(engine, record["run_id"]) == []


def test_a_tool_that_ignores_sigterm_gets_the_grace_then_sigkill(site, dataset, tmp_path, engine):
    container_plugin(site, "stubborn", "trap '' TERM; echo started; sleep 600 & wait; sleep 600")
    out = tmp_path / "out"
    result, record = run_on(
        site, engine, "stubborn", dataset, out, "--timeout", "1", "--stop-grace", "3"
    )
    assert result.returncode == 124, result.stderr
    assert record["container"]["applied"]["stop_grace_s"] == 3
    # the engine waited the grace before SIGKILL (a lower bound, not a timing race) ...
    assert record["duration_s"] >= 1 + 3
    # ... and then the container was gone: far below the 600 s the tool asked for
    assert record["duration_s"] < 60
    assert leftover_containers(engine, record["run_id"]) == []


@pytest.mark.parametrize(
    ("capabilities", "bounding"),
    [([], 0), (["NET_BIND_SERVICE", "cap_kill"], (1 << 10) | (1 << 5))],
)
def test_capabilities_are_empty_unless_asked(
    site, dataset, tmp_path, engine, capabilities, bounding
):
    container_plugin(
        site,
        "caps",
        "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status > {out_dir}/status",
        capabilities=capabilities,
    )
    out = tmp_path / "out"
    record = run_plugin("caps", dataset=dataset, out=out, backend=engine)
    assert record.status == "succeeded", (out / record.log).read_text()
    status = dict(line.split(":\t") for line in (out / "caps" / "status").read_text().splitlines())
    assert int(status["CapBnd"], 16) == bounding
    # the container runs as the invoking user: root keeps what is bounded, others get none
    assert int(status["CapEff"], 16) == (bounding if os.getuid() == 0 else 0)
    assert status["NoNewPrivs"] == "1"
    assert record.container.applied.capabilities == sorted(
        {"NET_BIND_SERVICE", "KILL"} & {c.upper().removeprefix("CAP_") for c in capabilities}
    )


def test_read_only_root_refuses_writes_outside_tmp(site, dataset, tmp_path, engine):
    container_plugin(
        site,
        "rofs",
        "touch /tmp/ok && echo tmp-ok > {out_dir}/tmp; "
        "if touch /etc/x 2>{out_dir}/err; then echo yes; else echo no; fi > {out_dir}/root",
        read_only_rootfs=True,
    )
    out = tmp_path / "out"
    record = run_plugin("rofs", dataset=dataset, out=out, backend=engine)
    assert record.status == "succeeded", (out / record.log).read_text()
    assert (out / "rofs" / "tmp").read_text() == "tmp-ok\n"
    assert (out / "rofs" / "root").read_text() == "no\n"
    assert "Read-only file system" in (out / "rofs" / "err").read_text()
    assert record.container.applied.read_only_rootfs is True


def test_named_mount_is_read_only_and_recorded(site, dataset, tmp_path, engine):
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"w" * 100)
    container_plugin(
        site,
        "pose",
        "cat /models/weights.bin | wc -c > {out_dir}/size; "
        "if touch /models/new 2>{out_dir}/err; then echo yes; else echo no; fi > {out_dir}/wrote",
        mounts={"models": {"target": "/models", "description": "pose models"}},
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "pose", dataset, out, "--mount", f"models={models}")
    assert result.returncode == 0, result.stderr
    assert (out / "pose" / "size").read_text().strip() == "100"
    assert (out / "pose" / "wrote").read_text() == "no\n"
    assert "Read-only file system" in (out / "pose" / "err").read_text()
    assert not (models / "new").exists()
    [mount] = record["container"]["applied"]["mounts"]
    assert mount["name"] == "models" and mount["target"] == "/models"
    assert mount["source"] == str(models.resolve())
    assert len(mount["fingerprint"]) == 64

    # the same files give the same fingerprint; a changed file a different one
    def fingerprint(out_dir):
        result, again = run_on(
            site, engine, "pose", dataset, out_dir, "--mount", f"models={models}"
        )
        assert result.returncode == 0, result.stderr
        return again["container"]["applied"]["mounts"][0]["fingerprint"]

    assert fingerprint(tmp_path / "again") == mount["fingerprint"]
    (models / "weights.bin").write_bytes(b"v" * 101)
    assert fingerprint(tmp_path / "changed") != mount["fingerprint"]


def test_named_mount_from_the_user_config(site, dataset, tmp_path, engine):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m").write_text("x")
    config = tmp_path / "config.toml"
    config.write_text(f'[container]\nmemory = "128m"\n[container.mounts]\nmodels = "{models}"\n')
    container_plugin(
        site, "pose", "ls /models > {out_dir}/ls", mounts={"models": {"target": "/models"}}
    )
    out = tmp_path / "out"
    result, record = run_on(site, engine, "pose", dataset, out, MDIVICOM_CONFIG_FILE=str(config))
    assert result.returncode == 0, result.stderr
    assert (out / "pose" / "ls").read_text() == "m\n"
    applied = record["container"]["applied"]
    assert applied["memory"] == 128 * 1024**2 and applied["mounts"][0]["source"] == str(models)


@pytest.mark.parametrize(
    ("mount_args", "message"),
    [
        (
            [],
            "the plugin needs the read-only mount 'models' at /models (pose models); give "
            "--mount models=PATH",
        ),
        (["--mount", "models={out}/cache"], "is inside --out"),
        (["--mount", "models=/no/such/folder"], "'/no/such/folder' does not exist"),
        (["--mount", "home=/"], "the plugin declares no mount named 'home' (declared: models)"),
        (["--mount", "models"], "expected NAME=PATH"),
    ],
)
def test_bad_mounts_are_exit_2_before_anything_runs(
    site, dataset, tmp_path, engine, mount_args, message
):
    container_plugin(
        site, "pose", "true", mounts={"models": {"target": "/models", "description": "pose models"}}
    )
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    args = [a.replace("{out}", str(out)) for a in mount_args]
    result, _ = run_on(site, engine, "pose", dataset, out, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        next(line for line in result.stderr.splitlines() if message in line)
    ]
    assert not (out / "_runs").exists()


def test_gpus_are_refused_before_anything_starts(site, dataset, tmp_path, engine):
    # these machines have no GPU, no nvidia runtime and no CDI spec
    container_plugin(site, "gpu", "true", resources={"gpus": "all"})
    out = tmp_path / "out"
    result, _ = run_on(site, engine, "gpu", dataset, out)
    assert result.returncode == 2, result.stderr
    assert f"the run asks for GPUs (all), but {engine} cannot serve GPU requests" in result.stderr
    assert "--gpus none" in result.stderr
    assert not (out / "_runs").exists()
    # --gpus none drops the manifest's request, and the run goes ahead
    result, _ = run_on(site, engine, "gpu", dataset, out, "--gpus", "none")
    assert result.returncode == 0, result.stderr


def test_dry_run_plan_shows_limits_and_hardening(site, dataset, tmp_path, engine):
    container_plugin(
        site,
        "planned",
        "true",
        resources={"memory": "1g", "shm_size": "256m"},
        capabilities=["SYS_NICE"],
        read_only_rootfs=True,
    )
    result, _ = run_on(site, engine, "planned", dataset, tmp_path / "o", "--dry-run", "--cpus", "2")
    assert result.returncode == 0, result.stderr
    for line in (
        "memory:     1 GiB",
        "cpus:       2",
        "shm size:   256 MiB",
        "gpus:       none",
        "init:       yes (signals reach the tool; stop grace 5 s)",
        "privileges: all capabilities dropped, added back: SYS_NICE; no-new-privileges",
        "root fs:    read-only, tmpfs /tmp",
    ):
        assert line in result.stderr, result.stderr


def test_container_options_are_refused_for_python_plugins(site, dataset, tmp_path):
    from pluginsite import plugin_dict

    site.manifest("py.json", plugin_dict("py"))
    result = site.cli(
        "run", "py", "--dataset", str(dataset), "--out", str(tmp_path / "o"), "--memory", "1g"
    )
    assert result.returncode == 2
    assert "--memory only applies to container plugins; lab/py is a python plugin" in (
        result.stderr
    )


def test_backends_list_reports_gpu_support(site, engine):
    result = site.cli("backends", "list", "--json")
    assert result.returncode == 0, result.stderr
    items = {item["name"]: item for item in json.loads(result.stdout)}
    # no GPU, no nvidia runtime, no CDI spec on these machines
    assert items[engine]["gpus"]["available"] is False
    assert {"docker": "nvidia", "podman": "CDI"}[engine] in items[engine]["gpus"]["detail"]
    assert items["python"]["gpus"] is None
    table = site.cli("backends", "list").stdout
    assert "; GPUs: no (" in next(line for line in table.splitlines() if line.startswith(engine))


def test_a_long_log_arrives_complete(site, dataset, tmp_path, engine):
    # the followed stream may end after the container; the tail is then fetched in one call
    container_plugin(
        site,
        "chatty",
        "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done; echo last-line >&2",
    )
    out = tmp_path / "out"
    record = run_plugin("chatty", dataset=dataset, out=out, backend=engine)
    assert record.status == "succeeded"
    lines = (out / record.log).read_text().splitlines()
    if LOG_RESENT_MARKER in lines:
        # the live stream lost part of it (Podman under load): the stored copy follows
        lines = lines[len(lines) - lines[::-1].index(LOG_RESENT_MARKER) :]
    assert [line for line in lines if line.startswith("line-")] == [
        f"line-{i}" for i in range(20000)
    ]
    assert lines.count("last-line") == 1
