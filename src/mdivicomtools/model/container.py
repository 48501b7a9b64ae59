"""What a container may use and touch: resources, named mounts, capabilities.

A manifest declares what its tool needs (`resources`, `mounts`, `capabilities`,
`stop_grace_s`, `read_only_rootfs` in ContainerSpec); the user may override the
resources and supplies the host paths of the mounts; the runner resolves both
into one ContainerSettings before anything starts. That one value is what the
plan shows, what the engine receives and what the record keeps, so the three
cannot disagree.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from mdivicomtools.common.text import close_matches
from mdivicomtools.common.timing import STOP_GRACE_S
from mdivicomtools.common.units import is_positive, parse_memory, parse_size

#: GPU request: every GPU, a number of GPUs, or device ids / UUIDs
Gpus = Literal["all"] | int | list[str]

#: seconds a stopped container gets between SIGTERM and SIGKILL unless the manifest says
DEFAULT_STOP_GRACE_S = float(STOP_GRACE_S)
#: (as strings: `re` compiles them on first use and keeps them; only container plugins
#: need them, and compiling at import cost every command)
MOUNT_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: an environment variable name as POSIX shells and both engines agree on it
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*\Z"
#: Linux capability names (without CAP_), the set Docker and Podman accept
CAPABILITIES = frozenset(
    {
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    }
)
#: Capabilities a manifest may not give back, and why. The container runs as
#: the invoking user (root, when mdivicom runs as root) in the engine's
#: namespaces, and the sandbox the docs promise is: the dataset and the named
#: mounts cannot be changed, the outputs are the runner's to promote, the host
#: is out of reach. Each of these undoes a part of that, often only in
#: combination with a kernel or engine detail, but a manifest is not the place
#: to weigh such details, so they are refused outright (an operator who really
#: needs one runs the tool outside mdivicom). Docker's default set (CHOWN,
#: DAC_OVERRIDE, FOWNER, KILL, SETUID, NET_BIND_SERVICE, ...) and SYS_NICE,
#: IPC_LOCK, SYS_RESOURCE and the like stay allowed: they act within the
#: container's namespaces, and a read-only mount refuses writes whatever the
#: permission checks say.
REFUSED_CAPABILITIES: dict[str, str] = {
    # Docker gives "ALL" every capability, including those below; Podman refuses
    # it next to the cap_drop ALL every plan sends: either way not what was meant
    "ALL": "it gives back every capability, SYS_ADMIN among them",
    "SYS_ADMIN": "it can remount the read-only dataset and named mounts writable, and mount "
    "other filesystems",
    "DAC_READ_SEARCH": "open_by_handle_at then opens any file of a mounted host filesystem "
    "by its handle, past the bind mounts (and writable through a read-write mount)",
    "SYS_MODULE": "it loads code into the host's kernel",
    "SYS_RAWIO": "it gives raw access to I/O ports and devices of the host",
    "SYS_BOOT": "it can replace the running host kernel (kexec_load is not namespaced)",
    "SYS_PTRACE": "ptrace gets around the engine's seccomp filter on kernels before 4.8",
    "SYS_TIME": "it sets the host's clock, with which a changed dataset file keeps the "
    "status-change time the dataset check compares",
    "SYS_PACCT": "it switches process accounting on or off for the whole host",
    "SYSLOG": "it reads and clears the host's kernel log, which shows kernel addresses",
    "MAC_ADMIN": "it changes the AppArmor or SELinux policy that confines the container",
    "MAC_OVERRIDE": "it overrides the mandatory access control that confines the container",
    "BPF": "it loads BPF programs into the host's kernel",
    "PERFMON": "it traces processes and the kernel outside the container (perf_event_open)",
    "NET_ADMIN": "it reconfigures the network the manifest's `network` decides and opens "
    "kernel interfaces (netfilter, traffic control) that host escapes have used",
    "LINUX_IMMUTABLE": "it can make files in the output and work folders immutable, which "
    "the runner then can neither promote nor remove",
    "AUDIT_CONTROL": "it changes or switches off the host's audit rules",
    "AUDIT_READ": "it reads the host's audit log",
}
#: container paths the runner itself mounts; a named mount may not shadow them
RESERVED_TARGETS = ("/mdivicom", "/tmp", "/proc", "/sys", "/dev")


class Resources(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """`container.resources`: limits the tool runs under (docs/container-plugins.md).

    memory and shm_size are bytes or sizes such as "512m" / "2g"; cpus may be
    fractional; pids caps the number of processes; gpus is "all", a count or a
    list of device ids.
    """

    memory: str | int | None = None
    cpus: float | None = None
    shm_size: str | int | None = None
    pids: int | None = None
    gpus: Gpus | None = None


class MountDecl(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One entry of `container.mounts`: a read-only host folder the user supplies by name."""

    #: checked and used as mount_target spells it (check_mount_decl)
    target: str
    required: bool = True
    description: str | None = None


class AppliedMount(msgspec.Struct, kw_only=True, frozen=True):
    """A named mount as it was given to the container (always read-only)."""

    name: str
    source: str
    target: str
    #: sha256 over the relative paths, sizes and modification times under `source`
    fingerprint: str | None = None


class ContainerSettings(msgspec.Struct, kw_only=True, frozen=True):
    """The resolved limits, mounts and hardening of one container run (recorded)."""

    memory: int | None = None
    cpus: float | None = None
    shm_size: int | None = None
    pids: int | None = None
    gpus: Gpus | None = None
    mounts: list[AppliedMount] = []
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    capabilities: list[str] = []
    read_only_rootfs: bool = False
    init: bool = True
    no_new_privileges: bool = True


def normalise_capability(name: str) -> str:
    return name.strip().upper().removeprefix("CAP_")


def check_capabilities(names: list[str], where: str) -> None:
    """Raise ValueError for a name that is no capability or one that defeats the sandbox.

    Refused here, at manifest validation, and not at run time: a plugin that asks
    for one is listed as broken and never starts a container.
    """
    for name in names:
        capability = normalise_capability(name)
        reason = REFUSED_CAPABILITIES.get(capability)
        if reason is not None:
            raise ValueError(
                f"{where}: {name!r} is refused: {reason}; the dataset, the mounts and the "
                "host must stay out of the tool's reach"
            )
        if capability not in CAPABILITIES:
            raise ValueError(
                f"{where}: unknown Linux capability {name!r}; use names such "
                'as "SYS_NICE" or "NET_BIND_SERVICE" (capabilities(7))'
            )


def check_env(env: dict[str, str], where: str) -> None:
    """Raise ValueError for a `container.env` entry the engines would not pass on as given.

    Docker sends the environment as "NAME=value" strings and Podman as a map, so
    a name holding "=" means different things to each: {"HOME=/etc": "x"} gave
    the container an entry HOME=/etc=x on Podman, next to the runner's HOME
    (which of the two a program reads depends on their order), and something
    else on Docker. An empty name failed only on Docker, a NUL in a value only
    when the container started (no environment can hold one). With names
    checked here, each name is one entry, and the runner's variables
    (MDIVICOM_*, HOME, TMPDIR) replace a manifest entry of the same name on both
    engines, as the docs promise.
    """
    for name, value in env.items():
        if not re.match(ENV_NAME_RE, name):
            raise ValueError(
                f"{where}: name {name!r} is not an environment variable name; use letters, "
                "digits and '_', not starting with a digit"
            )
        if "\x00" in value:
            raise ValueError(
                f"{where}.{name}: the value contains a NUL byte, which no environment can hold"
            )


def check_argv(argv: list[str] | None, where: str) -> None:
    """Raise ValueError for an argv element no program can be given: one holding a NUL.

    Arguments reach execve as C strings, so the container's init refused to start
    it (`exec /sbin/docker-init: invalid argument`, exit status 1), which read as
    the tool failing, while the same byte in `env` already made the plugin broken.
    """
    for index, arg in enumerate(argv or []):
        if "\x00" in arg:
            raise ValueError(
                f"{where}[{index}] contains a NUL byte, which no program argument can hold"
            )


#: the `{name}`s expanded in `command` and `entrypoint` (execution.container.plan maps
#: them to the container paths)
PLACEHOLDER_NAMES = ("dataset_dir", "out_dir", "work_dir", "config_path")
#: a braced identifier, but not a shell `${VAR}`
_BRACED_NAME = r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}"


def placeholder_slips(argv: list[str] | None, where: str) -> list[str]:
    """Notes for each `{name}` in `argv` that looks like a misspelt placeholder.

    Other braces are passed on as written (an awk program, JSON), so a slip such
    as `{outdir}` is no error; the tool just gets the literal text and fails with
    no hint of why. Only names close to a placeholder are named.
    """
    notes = []
    for index, arg in enumerate(argv or []):
        for name in re.findall(_BRACED_NAME, arg):
            if name in PLACEHOLDER_NAMES:
                continue
            close = close_matches(name.lower(), PLACEHOLDER_NAMES)
            if close:
                notes.append(
                    f"{where}[{index}] has {{{name}}}, which is no placeholder and is passed "
                    f"on as written; did you mean {{{close[0]}}}?"
                )
    return notes


#: variables the runner sets in every container besides its MDIVICOM_* ones
RUNNER_ENV = ("HOME", "TMPDIR")


def runner_owned(name: str) -> bool:
    """Whether the runner sets `name` itself, replacing a manifest's value: accepted
    (a manifest written for another runner still loads) but never what the tool sees."""
    return name.startswith("MDIVICOM_") or name in RUNNER_ENV


def check_resources(resources: Resources, where: str) -> None:
    """Raise ValueError naming the field when a resource value cannot be applied."""
    if resources.memory is not None:
        parse_memory(resources.memory, f"{where}.memory")
    if resources.shm_size is not None:
        parse_size(resources.shm_size, f"{where}.shm_size")
    if resources.cpus is not None and not is_positive(resources.cpus):
        raise ValueError(f"{where}.cpus must be more than 0 and finite, got {resources.cpus:g}")
    if resources.pids is not None and resources.pids <= 0:
        raise ValueError(f"{where}.pids must be more than 0, got {resources.pids}")
    check_gpus(resources.gpus, f"{where}.gpus")


def check_gpus(gpus: Gpus | None, where: str) -> None:
    if isinstance(gpus, bool) or (isinstance(gpus, int) and gpus <= 0):
        raise ValueError(f'{where} must be "all", a count above 0 or a list of ids, got {gpus!r}')
    if isinstance(gpus, list) and (not gpus or not all(g.strip() for g in gpus)):
        raise ValueError(f"{where} must list at least one non-empty device id")


def mount_target(target: str) -> str:
    """`target` spelt the one way the reserved check, the engines and the record see it.

    Empty and "." components go, so "//mdivicom/dataset/", "/./mdivicom" and
    "/mdivicom//dataset" are all "/mdivicom/..." and cannot slip past the
    reserved prefixes (a lexical check let "//mdivicom/dataset/sub" through, and
    Podman then hid part of the dataset behind it). posixpath.normpath is not
    used: it keeps a leading "//" (POSIX leaves its meaning to the system) and
    would resolve "..", which check_mount_decl refuses instead.
    """
    return "/" + "/".join(part for part in target.split("/") if part not in ("", "."))


def check_mount_decl(name: str, decl: MountDecl) -> None:
    """Raise ValueError unless `decl.target` is an absolute folder a named mount may take.

    Refused: a relative path, a ".." component, a NUL byte, "/" itself (the mount
    would hide the whole image) and anything in or under the paths the runner or
    the engine mounts (RESERVED_TARGETS), after mount_target's normalisation.
    """
    if not re.match(MOUNT_NAME_RE, name):
        raise ValueError(
            f"container.mounts: name {name!r} must be 1-64 lowercase letters, digits, '_' or '-'"
        )
    target = decl.target
    if not target.startswith("/") or ".." in target.split("/") or "\x00" in target:
        raise ValueError(
            f"container.mounts.{name}.target {target!r} must be an absolute path such as "
            "/models, without '..'"
        )
    clean = mount_target(target)
    if clean == "/":
        raise ValueError(
            f"container.mounts.{name}.target {target!r} is the container's root, which the "
            "mount would hide whole; choose a folder such as /models"
        )
    for reserved in RESERVED_TARGETS:
        if clean == reserved or clean.startswith(reserved + "/"):
            raise ValueError(
                f"container.mounts.{name}.target {target!r} is inside {reserved}, which "
                "mdivicomtools or the engine manages; choose another path such as /models"
            )


def check_mount_targets(mounts: dict[str, MountDecl]) -> None:
    """Raise ValueError when two named mounts have the same target once normalised:
    the engines refuse that only when the container is created."""
    seen: dict[str, str] = {}
    for name, decl in sorted(mounts.items()):
        check_mount_decl(name, decl)
        clean = mount_target(decl.target)
        if clean in seen:
            raise ValueError(
                f"container.mounts.{name}.target {decl.target!r} is also the target of "
                f"container.mounts.{seen[clean]}; give each mount a folder of its own"
            )
        seen[clean] = name


def parse_gpus_option(text: str) -> Gpus | None:
    """`--gpus`: "all", a count, comma-separated ids, or "none" to ask for no GPU."""
    value = text.strip()
    if value.lower() == "none":
        return None
    if value.lower() == "all":
        return "all"
    if value.isdigit():
        count = int(value)
        if count == 0:
            return None
        return count
    ids = [part.strip() for part in value.split(",")]
    if not all(ids):
        raise ValueError(f"--gpus {text!r}: expected all, none, a count or ids such as 0,1")
    return ids
