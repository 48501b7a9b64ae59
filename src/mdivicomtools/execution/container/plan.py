"""Exactly what a container plugin's container gets: mounts, argv, env, user, labels,
limits and hardening.

The plan is made before anything starts, printed by `--dry-run`, recorded,
and handed to the engine whole; it is the same for Docker and Podman, so the
two cannot differ in what the container sees. Hardening is not optional: every
container gets an init process (so SIGTERM reaches the tool and a stop is
prompt), no-new-privileges and no capabilities beyond those the manifest names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from mdivicomtools.common.safefs import display_name
from mdivicomtools.common.units import format_size
from mdivicomtools.errors import MdivicomError
from mdivicomtools.model.container import PLACEHOLDER_NAMES, ContainerSettings
from mdivicomtools.model.run import RunRequest

MOUNT_ROOT = "/mdivicom"
DATASET_MOUNT = f"{MOUNT_ROOT}/dataset"
OUT_MOUNT = f"{MOUNT_ROOT}/out"
WORK_MOUNT = f"{MOUNT_ROOT}/work"
CONFIG_MOUNT = f"{MOUNT_ROOT}/config.json"
PLACEHOLDERS = {
    "{" + name + "}": path
    for name, path in zip(
        PLACEHOLDER_NAMES, (DATASET_MOUNT, OUT_MOUNT, WORK_MOUNT, CONFIG_MOUNT), strict=True
    )
}
LABEL_RUN_ID = "mdivicomtools.run_id"
LABEL_PLUGIN = "mdivicomtools.plugin"
LABEL_PID = "mdivicomtools.pid"
LABEL_HOST = "mdivicomtools.host"


class UnmountablePath(MdivicomError):
    """A host folder the engines cannot be told about: its name is not UTF-8."""


def engine_text(path: str | Path) -> str:
    """A host path as the engines' APIs take it: UTF-8 text in JSON.

    Python names a file in this process's filesystem encoding: under the C
    locale with PYTHONUTF8=0 a `ses-ü` folder is `ses-\\udcc3\\udcbc`, which
    the JSON of the API call turned into replacement characters, and the engine
    refused to mount a folder that `does not exist`. Its bytes are the name, so
    they are read as UTF-8. A name that is not UTF-8 (`ses-\\xff02`) cannot be
    given to the engine at all: the run fails with that said, not with the
    engine's mangled name.
    """
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnmountablePath(
            f"cannot mount '{display_name(raw)[0]}' into the container: its name is not "
            "UTF-8, and Docker and Podman take paths as UTF-8 text; rename it, or link "
            "it under a UTF-8 name and give that"
        ) from None


class Mount(msgspec.Struct, frozen=True):
    source: str
    target: str
    read_only: bool


class ContainerPlan(msgspec.Struct, kw_only=True):
    """Exactly what will be run; `--dry-run` prints it, the engine receives it."""

    engine: str
    image: str
    #: None only in a dry run whose image is not on the engine yet
    image_id: str | None
    command: list[str] | None
    entrypoint: list[str] | None
    env: dict[str, str]
    mounts: list[Mount]
    user: str
    network: bool
    labels: dict[str, str]
    #: resources, named mounts (also in `mounts`), capabilities, init, grace
    settings: ContainerSettings = ContainerSettings()
    #: in a dry run that did not pull: what a run would pull first
    pull: str | None = None

    @property
    def cap_drop(self) -> list[str]:
        """Every capability is dropped; `settings.capabilities` are added back."""
        return ["ALL"]


def expand(argv: list[str] | None) -> list[str] | None:
    """Replace the four placeholders with container paths; other braces stay as they are."""
    if argv is None:
        return None
    expanded = []
    for arg in argv:
        for placeholder, path in PLACEHOLDERS.items():
            arg = arg.replace(placeholder, path)
        expanded.append(arg)
    return expanded


def build_plan(
    request: RunRequest, engine: str, image_id: str | None, staging_dir: Path, config_path: Path
) -> ContainerPlan:
    spec = request.spec.container
    assert spec is not None  # kind container is validated to have one
    settings = request.container or ContainerSettings()
    env = dict(spec.env)
    env.update(
        {
            "MDIVICOM_DATASET_DIR": DATASET_MOUNT,
            "MDIVICOM_OUT_DIR": OUT_MOUNT,
            "MDIVICOM_WORK_DIR": WORK_MOUNT,
            "MDIVICOM_CONFIG": CONFIG_MOUNT,
            # a dry run prints this plan and starts nothing, so a container that
            # runs always runs for real
            "MDIVICOM_DRY_RUN": "0",
            # MDIVICOM_FINAL_OUT_DIR is a host path: text, as the record writes it
            **{key: display_name(value)[0] for key, value in request.plugin_env().items()},
            # the container runs as the invoking user, who has no home in the image
            "HOME": WORK_MOUNT,
            "TMPDIR": f"{WORK_MOUNT}/.tmp",
        }
    )
    return ContainerPlan(
        engine=engine,
        image=request.image_name or spec.image,
        image_id=image_id,
        command=expand(spec.command),
        entrypoint=expand(spec.entrypoint),
        env=env,
        mounts=[
            Mount(engine_text(request.dataset_dir), DATASET_MOUNT, read_only=True),
            Mount(engine_text(staging_dir), OUT_MOUNT, read_only=False),
            Mount(engine_text(request.work_dir), WORK_MOUNT, read_only=False),
            Mount(engine_text(config_path), CONFIG_MOUNT, read_only=True),
            *(Mount(engine_text(m.source), m.target, read_only=True) for m in settings.mounts),
        ],
        user=f"{os.getuid()}:{os.getgid()}",
        network=spec.network,
        labels={
            LABEL_RUN_ID: request.run_id,
            LABEL_PLUGIN: request.plugin.ref,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: os.uname().nodename,
        },
        settings=settings,
    )


def describe_plan(plan: ContainerPlan) -> str:
    """The plan as lines a person can check (the `--dry-run` output)."""
    lines = [
        f"engine:     {plan.engine}",
        f"image:      {plan.image} ({plan.image_id or f'not on {plan.engine} yet'})",
        *([f"pull:       {plan.pull}"] if plan.pull else []),
        *describe_argv(plan.entrypoint, plan.command),
        f"user:       {plan.user}",
        f"network:    {'default' if plan.network else 'none'}",
    ]
    lines += [
        f"mount:      {m.source} -> {m.target} ({'ro' if m.read_only else 'rw'})"
        for m in plan.mounts
    ]
    lines += describe_settings(plan.settings)
    lines += [f"env:        {key}={value}" for key, value in sorted(plan.env.items())]
    return "\n".join(lines) + "\n"


def describe_argv(entrypoint: list[str] | None, command: list[str] | None) -> list[str]:
    """The entrypoint and command lines of the plan, as both engines run them.

    An empty entrypoint clears the image's ENTRYPOINT, and any entrypoint from the
    manifest drops the image's CMD too (Docker's and Podman's rule, as for
    `--entrypoint`); the plan says so rather than promise the image's defaults.
    """
    if entrypoint is None:
        first = "(image default)"
    elif entrypoint in ([], [""]):  # `[""]`: `--entrypoint ""`, the engines' own spelling
        first = "none (the image's ENTRYPOINT is cleared)"
    else:
        first = json.dumps(entrypoint)
    if command:
        second = json.dumps(command)
    elif entrypoint is None:
        second = "(image default)"
    else:
        second = "none (an entrypoint in the manifest drops the image's CMD)"
    return [f"entrypoint: {first}", f"command:    {second}"]


def describe_gpus(gpus: object) -> str:
    if gpus is None:
        return "none"
    if isinstance(gpus, list):
        return "devices " + ",".join(gpus)
    return str(gpus)


def describe_settings(settings: ContainerSettings) -> list[str]:
    """The limits and hardening lines of the `--dry-run` plan."""
    unlimited = "(engine default)"
    caps = ",".join(settings.capabilities) if settings.capabilities else "none"
    return [
        f"memory:     {format_size(settings.memory) if settings.memory else unlimited}",
        f"cpus:       {f'{settings.cpus:g}' if settings.cpus else unlimited}",
        f"shm size:   {format_size(settings.shm_size) if settings.shm_size else unlimited}",
        f"pids:       {settings.pids if settings.pids else unlimited}",
        f"gpus:       {describe_gpus(settings.gpus)}",
        f"init:       {'yes' if settings.init else 'no'} (signals reach the tool; "
        f"stop grace {settings.stop_grace_s:g} s)",
        f"privileges: all capabilities dropped, added back: {caps}; no-new-privileges",
        "root fs:    "
        + ("read-only, tmpfs /tmp" if settings.read_only_rootfs else "writable (image layer)"),
    ]
