"""What each engine adapter sends for a plan, without an engine: exact create payloads.

These machines have no GPU, so the GPU requests are checked here, as the
docker-py DeviceRequest and the Podman CDI device names the adapters build;
the real engines are used for the refusal path (tests/test_container_limits.py).
"""

from __future__ import annotations

import pytest
from docker.types import DeviceRequest
from mdivicomtools_docker.engine import create_options as docker_options
from mdivicomtools_docker.engine import device_requests
from mdivicomtools_podman.engine import cdi_devices, cdi_gpu_specs
from mdivicomtools_podman.engine import create_options as podman_options

from mdivicomtools.common.units import format_size, parse_size
from mdivicomtools.execution.container.plan import ContainerPlan, Mount, describe_plan
from mdivicomtools.model.container import (
    CAPABILITIES,
    REFUSED_CAPABILITIES,
    ContainerSettings,
    parse_gpus_option,
)
from mdivicomtools.model.contract import InvalidPlugin, parse_plugin


def plan(**settings: object) -> ContainerPlan:
    return ContainerPlan(
        engine="x",
        image="localhost/tool:1",
        image_id="sha256:abc",
        command=["run"],
        entrypoint=None,
        env={"A": "1"},
        mounts=[Mount("/data", "/mdivicom/dataset", read_only=True)],
        user="1000:1000",
        network=False,
        labels={},
        settings=ContainerSettings(**settings),
    )


@pytest.mark.parametrize(
    ("gpus", "docker", "podman"),
    [
        (
            "all",
            {
                "Driver": "",
                "Count": -1,
                "DeviceIDs": [],
                "Capabilities": [["gpu"]],
                "Options": {},
            },
            ["nvidia.com/gpu=all"],
        ),
        (
            2,
            {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}},
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1"],
        ),
        (
            ["GPU-3f2a", "1"],
            {
                "Driver": "",
                "Count": 0,
                "DeviceIDs": ["GPU-3f2a", "1"],
                "Capabilities": [["gpu"]],
                "Options": {},
            },
            ["nvidia.com/gpu=GPU-3f2a", "nvidia.com/gpu=1"],
        ),
    ],
)
def test_gpu_requests_as_each_engine_api_wants_them(gpus, docker, podman):
    [request] = device_requests(gpus)
    assert isinstance(request, DeviceRequest) and dict(request) == docker
    assert docker_options(plan(gpus=gpus))["device_requests"] == [request]
    assert cdi_devices(gpus) == podman
    assert podman_options(plan(gpus=gpus), rootless=False)["devices"] == podman


def test_no_gpu_sends_no_device_request():
    assert device_requests(None) == [] and cdi_devices(None) == []
    assert "device_requests" not in docker_options(plan())
    assert "devices" not in podman_options(plan(), rootless=False)


def test_hardening_and_limits_on_docker():
    options = docker_options(
        plan(
            memory=64 * 1024**2,
            cpus=1.5,
            shm_size=1024**3,
            pids=100,
            capabilities=["SYS_NICE"],
            read_only_rootfs=True,
        )
    )
    assert options["init"] is True
    assert options["cap_drop"] == ["ALL"] and options["cap_add"] == ["SYS_NICE"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["read_only"] is True and options["tmpfs"] == {
        "/tmp": "rw,nosuid,nodev,mode=1777"
    }
    assert (options["mem_limit"], options["memswap_limit"]) == (64 * 1024**2, 64 * 1024**2)
    assert options["nano_cpus"] == 1_500_000_000
    assert (options["shm_size"], options["pids_limit"]) == (1024**3, 100)
    assert options["network_mode"] == "none"
    [mount] = options["mounts"]
    assert mount["ReadOnly"] is True and mount["Type"] == "bind"


def test_hardening_and_limits_on_podman():
    options = podman_options(
        plan(
            memory=64 * 1024**2,
            cpus=1.5,
            shm_size=1024**3,
            pids=100,
            capabilities=["SYS_NICE"],
            read_only_rootfs=True,
        ),
        rootless=True,
    )
    assert options["init"] is True and options["no_new_privileges"] is True
    assert options["cap_drop"] == ["ALL"] and options["cap_add"] == ["SYS_NICE"]
    assert options["read_only"] is True
    assert options["mounts"] == [
        {"type": "bind", "source": "/data", "target": "/mdivicom/dataset", "read_only": True},
        {"type": "tmpfs", "source": "tmpfs", "target": "/tmp"},
    ]
    # podman-py drops nano_cpus silently: the limit goes in as a CFS quota
    assert "nano_cpus" not in options
    assert (options["cpu_period"], options["cpu_quota"]) == (100_000, 150_000)
    assert (options["mem_limit"], options["memswap_limit"]) == (64 * 1024**2, 64 * 1024**2)
    assert (options["shm_size"], options["pids_limit"]) == (1024**3, 100)
    assert options["userns_mode"] == "keep-id" and options["network_mode"] == "none"


def test_defaults_add_nothing_but_the_hardening():
    docker = docker_options(plan())
    assert not {
        "cap_add",
        "read_only",
        "tmpfs",
        "mem_limit",
        "nano_cpus",
        "shm_size",
        "pids_limit",
    } & set(docker)
    podman = podman_options(plan(), rootless=False)
    assert not {
        "cap_add",
        "read_only",
        "mem_limit",
        "cpu_quota",
        "shm_size",
        "pids_limit",
        "userns_mode",
    } & set(podman)


def test_cdi_specs_are_found_by_kind(tmp_path):
    (tmp_path / "other.yaml").write_text("kind: example.com/fpga\n")
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    (tmp_path / "notes.txt").write_text("nvidia.com/gpu\n")
    assert cdi_gpu_specs((str(tmp_path), str(tmp_path / "missing"))) == [tmp_path / "nvidia.yaml"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64m", 64 * 1024**2),
        ("64MiB", 64 * 1024**2),
        ("2g", 2 * 1024**3),
        ("1.5G", 3 * 1024**3 // 2),
        ("512", 512),
        (4096, 4096),
        ("1t", 1024**4),
    ],
)
def test_sizes(text, size):
    assert parse_size(text, "memory") == size


@pytest.mark.parametrize("text", ["lots", "-1m", "0", "2x", True])
def test_bad_sizes_name_the_field(text):
    with pytest.raises(ValueError, match="memory"):
        parse_size(text, "memory")


def test_format_size():
    assert [format_size(n) for n in (64 * 1024**2, 3 * 1024**3 // 2, 100)] == [
        "64 MiB",
        "1.5 GiB",
        "100 B",
    ]


@pytest.mark.parametrize(
    ("text", "gpus"),
    [
        ("all", "all"),
        ("none", None),
        ("0", None),
        ("2", 2),
        ("0,1", ["0", "1"]),
        ("GPU-ab", ["GPU-ab"]),
    ],
)
def test_gpus_option(text, gpus):
    assert parse_gpus_option(text) == gpus


def manifest(**container: object) -> dict:
    return {
        "meta": {
            "api_version": "mdivicomtools.plugin.v0.1",
            "id": "t",
            "kind": "container",
            "version": "1",
            "description": "t",
        },
        "container": {"image": "localhost/t:1", **container},
    }


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"resources": {"memory": "lots"}}, "container.resources.memory 'lots' is not a size"),
        ({"resources": {"cpus": 0}}, "container.resources.cpus must be more than 0"),
        ({"resources": {"pids": -1}}, "container.resources.pids must be more than 0"),
        ({"resources": {"gpus": 0}}, "container.resources.gpus must be"),
        ({"resources": {"gpu": 1}}, "container.resources.gpu is not a known field"),
        ({"mounts": {"models": {"target": "models"}}}, "must be an absolute path"),
        ({"mounts": {"models": {"target": "/mdivicom/x"}}}, "is inside /mdivicom"),
        # normalised before the check: a leading "//", "." and empty components
        (
            {"mounts": {"m": {"target": "//mdivicom/dataset/sub"}}},
            "container.mounts.m.target '//mdivicom/dataset/sub' is inside /mdivicom",
        ),
        ({"mounts": {"m": {"target": "/./tmp//x/"}}}, "is inside /tmp"),
        ({"mounts": {"m": {"target": "/dev/."}}}, "is inside /dev"),
        ({"mounts": {"m": {"target": "/."}}}, "'/.' is the container's root"),
        ({"mounts": {"m": {"target": "//"}}}, "'//' is the container's root"),
        ({"mounts": {"m": {"target": "/models/../mdivicom"}}}, "without '..'"),
        ({"mounts": {"m": {"target": "/mod\x00els"}}}, "must be an absolute path"),
        (
            {"mounts": {"a": {"target": "/models"}, "b": {"target": "//models/"}}},
            "container.mounts.b.target '//models/' is also the target of container.mounts.a",
        ),
        ({"mounts": {"Models": {"target": "/m"}}}, "name 'Models' must be"),
        ({"mounts": {"m": {"target": "/m", "rw": True}}}, "mounts[...].rw is not a known field"),
        ({"capabilities": ["SYS_WIZARD"]}, "unknown Linux capability 'SYS_WIZARD'"),
        (
            {"capabilities": ["SYS_ADMIN"]},
            "container.capabilities: 'SYS_ADMIN' is refused: it can remount the read-only",
        ),
        (
            {"capabilities": ["SYS_NICE", "cap_dac_read_search"]},
            "'cap_dac_read_search' is refused: open_by_handle_at",
        ),
        ({"capabilities": ["all"]}, "container.capabilities: 'all' is refused: it gives back"),
        ({"capabilities": ["SYS_TIME"]}, "'SYS_TIME' is refused: it sets the host's clock"),
        ({"stop_grace_s": -1}, "container.stop_grace_s must be between 0 and 3600"),
        ({"env": {"HOME=/etc": "x"}}, "container.env: name 'HOME=/etc' is not an environment"),
        ({"env": {"": "x"}}, "container.env: name '' is not an environment variable name"),
        ({"env": {"1X": "x"}}, "name '1X' is not"),
        ({"env": {"A-B": "x"}}, "name 'A-B' is not"),
        ({"env": {"A\nB": "x"}}, "name 'A\\nB' is not"),
        ({"env": {"LAB": "a\x00b"}}, "container.env.LAB: the value contains a NUL byte"),
        (
            {"env": {"LANG": "C", "THREADS": 4}},
            'container.env.THREADS: expected a string, got int 4; quote it ("THREADS": "4")',
        ),
        ({"env": {"DEBUG": True}}, 'got bool true; quote it ("DEBUG": "true")'),
        ({"read_only": True}, "container.read_only is not a known field"),
        (
            {"entrypoint": []},
            "container.entrypoint is [], which clears the image's ENTRYPOINT and its CMD; "
            "give the argv to run as container.command",
        ),
        ({"entrypoint": [], "command": []}, "container.entrypoint is [], which clears"),
        ({"entrypoint": [""]}, 'container.entrypoint is [""], which clears the image'),
        (
            {"command": ["ls", "a\x00b"]},
            "container.command[1] contains a NUL byte, which no program argument can hold",
        ),
        ({"entrypoint": ["tool\x00"]}, "container.entrypoint[0] contains a NUL byte"),
        (
            {"image": "localhost/mdivicom test:1"},
            "container.image 'localhost/mdivicom test:1' is not an image reference the "
            "engines accept: it holds whitespace",
        ),
        ({"image": "localhost/Tools:1"}, "accept: a repository name must be lowercase"),
        ({"image": "localhost/tools:"}, "accept: it is not of the form [registry/]name"),
    ],
)
def test_manifest_container_fields_are_checked(container, message):
    with pytest.raises(InvalidPlugin, match=None) as caught:
        parse_plugin(manifest(**container))
    assert message in str(caught.value)


def test_refused_capabilities_are_real_names_and_the_harmless_ones_pass():
    # a typo in the refusal table would refuse nothing
    assert set(REFUSED_CAPABILITIES) - {"ALL"} <= CAPABILITIES
    # Docker's default set and the usual tuning ones stay allowed
    allowed = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"]
    allowed += ["SETPCAP", "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "MKNOD"]
    allowed += ["AUDIT_WRITE", "SETFCAP", "SYS_NICE", "IPC_LOCK", "SYS_RESOURCE"]
    spec = parse_plugin(manifest(capabilities=allowed)).container
    assert spec.capabilities == allowed


def test_manifest_container_fields_parse():
    spec = parse_plugin(
        manifest(
            resources={"memory": "8g", "cpus": 4, "gpus": ["0"]},
            mounts={"models": {"target": "/models", "required": False}},
            capabilities=["CAP_SYS_NICE"],
            stop_grace_s=10,
            read_only_rootfs=True,
        )
    ).container
    assert spec.resources.memory == "8g" and spec.resources.cpus == 4.0
    assert spec.mounts["models"].required is False
    assert spec.capabilities == ["CAP_SYS_NICE"] and spec.stop_grace_s == 10


def test_manifest_env_names_and_values_that_pass():
    env = {"_X": "", "lower_1": "a=b c", "HOME": "/etc", "MDIVICOM_OUT_DIR": "/x", "U": "é\n"}
    assert parse_plugin(manifest(env=env)).container.env == env


class _Info:
    def __init__(self, runtimes):
        self.runtimes = runtimes

    def info(self):
        return {"Runtimes": self.runtimes}


def test_docker_gpu_support_follows_the_registered_runtimes(monkeypatch):
    from mdivicomtools_docker import engine as docker_engine

    monkeypatch.setattr(docker_engine.shutil, "which", lambda name: None)
    with_nvidia = docker_engine.DockerEngine(_Info({"runc": {}, "nvidia": {}}), "unix:///d.sock")
    assert with_nvidia.gpu_support().available is True
    without = docker_engine.DockerEngine(_Info({"runc": {}}), "unix:///d.sock")
    answer = without.gpu_support()
    assert answer.available is False and "nvidia-container-toolkit" in answer.detail


def test_podman_gpu_support_follows_the_cdi_specs(monkeypatch, tmp_path):
    from mdivicomtools_podman import engine as podman_engine

    monkeypatch.setattr(podman_engine, "CDI_SPEC_DIRS", (str(tmp_path),))
    engine = podman_engine.PodmanEngine(object(), "unix:///p.sock")
    assert engine.gpu_support().available is False
    (tmp_path / "nvidia.yaml").write_text("kind: nvidia.com/gpu\n")
    answer = engine.gpu_support()
    assert answer.available is True and str(tmp_path / "nvidia.yaml") in answer.detail
    remote = podman_engine.PodmanEngine(object(), "tcp://cluster:8888")
    assert remote.gpu_support().available is False


def _spec(**container: object):
    return parse_plugin(manifest(**container)).container


def test_precedence_manifest_then_user_config_then_run_options(tmp_path, monkeypatch):
    from mdivicomtools.model.options import RunOptions
    from mdivicomtools.runner.containers import container_settings

    config = tmp_path / "config.toml"
    config.write_text('[container]\nmemory = "2g"\nstop_grace_s = 7\n')
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(config))
    spec = _spec(resources={"memory": "1g", "cpus": 2, "pids": 50, "gpus": 1}, stop_grace_s=3)
    options = RunOptions(dataset="d", out="o")
    settings = container_settings(spec, options, tmp_path / "out")
    assert (settings.memory, settings.cpus, settings.pids, settings.gpus) == (
        2 * 1024**3,
        2.0,
        50,
        1,
    )
    assert settings.stop_grace_s == 7
    options = RunOptions(dataset="d", out="o", memory="512m", cpus=0.5, gpus="none", stop_grace=1)
    settings = container_settings(spec, options, tmp_path / "out")
    assert (settings.memory, settings.cpus, settings.gpus) == (512 * 1024**2, 0.5, None)
    assert settings.stop_grace_s == 1 and settings.init and settings.no_new_privileges


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ('[container]\nmemory = "lots"\n', {}, "memory 'lots' is not a size"),
        ("[container]\nbogus = 1\n", {}, "unknown key 'container.bogus'"),
        ("", {"memory": "0"}, "memory must be more than 0 bytes"),
        ("", {"cpus": -1.0}, "cpus must be more than 0"),
        # NaN compares false with 0, and infinity is no limit: both crashed the engine call
        ("", {"cpus": float("nan")}, "cpus must be more than 0 and finite, got nan"),
        ("", {"cpus": float("inf")}, "cpus must be more than 0 and finite, got inf"),
        (
            "[container]\ncpus = nan\n",
            {},
            "config.toml': cpus must be more than 0 and finite, got nan",
        ),
        ("", {"gpus": "0,,1"}, "gpus '0,,1'"),
        ("", {"stop_grace": 7200.0}, "stop_grace must be between 0 and 3600"),
        # the site's config, not an option the user never gave, is named
        (
            "[container]\ncpus = -3\n",
            {},
            "config.toml': cpus must be more than 0 and finite, got -3",
        ),
        (
            "[container]\nstop_grace_s = -1\n",
            {},
            "config.toml': stop_grace_s must be between 0 and 3600 seconds, got -1",
        ),
    ],
)
def test_bad_overrides_are_usage_errors(tmp_path, monkeypatch, config, options, message):
    from mdivicomtools.errors import UsageError
    from mdivicomtools.model.options import RunOptions
    from mdivicomtools.runner.containers import container_settings

    path = tmp_path / "config.toml"
    path.write_text(config)
    monkeypatch.setenv("MDIVICOM_CONFIG_FILE", str(path))
    with pytest.raises(UsageError) as caught:
        container_settings(_spec(), RunOptions(dataset="d", out="o", **options), tmp_path / "o")
    assert message in str(caught.value)
    assert "--" not in str(caught.value)  # a Python caller is told its keywords, not flags
    assert caught.value.exit_code == 2


def test_a_misspelt_placeholder_is_noted_and_other_braces_are_not():
    """`{outdir}` reaches the tool as written and it fails with no hint why; braces of
    awk, JSON or the shell are no slip and get no note."""
    spec = parse_plugin(
        manifest(
            command=["sh", "-c", "ls {dataset} > {outdir}/l.txt; echo ${out_dir} {config_path}"],
            entrypoint=["awk", "{next} {print $1}", "{OUT_DIR}", '{"a": 1}'],
        )
    )
    assert spec.notes == [
        "container.command[2] has {dataset}, which is no placeholder and is passed on as "
        "written; did you mean {dataset_dir}?",
        "container.command[2] has {outdir}, which is no placeholder and is passed on as "
        "written; did you mean {out_dir}?",
        "container.entrypoint[2] has {OUT_DIR}, which is no placeholder and is passed on as "
        "written; did you mean {out_dir}?",
    ]


@pytest.mark.parametrize(
    ("image", "hub"),
    [("tools:1.0", "docker.io/library/tools:1.0"), ("lab/tools", "docker.io/lab/tools")],
)
def test_an_image_without_a_registry_is_noted(image, hub):
    """A short name means docker.io to Docker and whatever registries.conf says (or a
    refusal without a terminal) to Podman: valid, but not the same image everywhere."""
    assert parse_plugin(manifest(image=image)).notes == [
        f"container.image {image!r} names no registry: Docker reads it as {hub!r}, Podman "
        "may refuse a short name; write it fully qualified (that, or "
        f"'localhost/{image}' for an image built or loaded here)"
    ]


@pytest.mark.parametrize(
    "image",
    [
        "localhost/t:1",
        "localhost:5000/lab/t:1",
        "docker.io/library/busybox:1.36",
        "ghcr.io/lab/t@sha256:" + "a" * 64,
        "registry.example.org/lab/t:1.0_rc-2@sha256:" + "b" * 64,
    ],
)
def test_fully_qualified_references_pass_without_a_note(image):
    assert parse_plugin(manifest(image=image)).notes == []


def test_an_empty_entrypoint_reaches_each_engine_as_none():
    """podman-py drops an empty list from its request, so Podman kept the image's
    ENTRYPOINT; `[""]` is libpod's (and `podman run --entrypoint ""`'s) spelling."""
    cleared = plan()
    cleared.entrypoint = []
    assert docker_options(cleared)["entrypoint"] == []
    assert podman_options(cleared, rootless=False)["entrypoint"] == [""]
    assert "entrypoint" not in podman_options(plan(), rootless=False)
    cleared.entrypoint = ["tool", "--flag"]
    assert podman_options(cleared, rootless=False)["entrypoint"] == ["tool", "--flag"]


@pytest.mark.parametrize(
    ("entrypoint", "command", "lines"),
    [
        (None, None, ["entrypoint: (image default)", "command:    (image default)"]),
        (None, ["run"], ["entrypoint: (image default)", 'command:    ["run"]']),
        (
            [],
            ["run"],
            ["entrypoint: none (the image's ENTRYPOINT is cleared)", 'command:    ["run"]'],
        ),
        (
            ["tool"],
            None,
            [
                'entrypoint: ["tool"]',
                "command:    none (an entrypoint in the manifest drops the image's CMD)",
            ],
        ),
        (["tool"], ["x"], ['entrypoint: ["tool"]', 'command:    ["x"]']),
        (
            [""],
            ["run"],
            ["entrypoint: none (the image's ENTRYPOINT is cleared)", 'command:    ["run"]'],
        ),
    ],
)
def test_the_plan_says_what_runs_of_entrypoint_and_command(entrypoint, command, lines):
    shown = plan()
    shown.entrypoint, shown.command = entrypoint, command
    described = describe_plan(shown).splitlines()
    assert described[2:4] == lines


def test_an_ssh_docker_host_without_paramiko_is_told_how_to_get_there():
    """docker-py needs paramiko for ssh:// (the docker command uses the system's ssh);
    the fix said "start Docker Engine", which was running all along."""
    from mdivicomtools_docker.engine import ssh_fix

    assert ssh_fix("ssh://me@build:2222", "Install paramiko package to enable ssh:// support") == (
        "docker-py reaches ssh:// hosts only with the paramiko package: `pip install "
        "paramiko` into mdivicom's environment, or forward the engine's socket (`ssh -NL "
        "/tmp/docker.sock:/var/run/docker.sock ssh://me@build:2222`) and set "
        "DOCKER_HOST=unix:///tmp/docker.sock"
    )
    assert ssh_fix("unix:///var/run/docker.sock", "Connection refused") is None
