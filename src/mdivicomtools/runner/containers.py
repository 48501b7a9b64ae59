"""A container plugin's resources, named mounts and hardening, resolved before the run.

The manifest says what the tool needs, the user config what the site allows,
the run options what this run wants (in that order of precedence, last wins).
Everything a user can get wrong here (a size that is not a size, a mount that
does not exist or lies inside `--out`, a mount the plugin never declared) is a
UsageError before anything starts, so a bad option never costs a container run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mdivicomtools.common.home import expand_home
from mdivicomtools.common.units import is_positive, parse_memory, parse_size
from mdivicomtools.errors import UsageError
from mdivicomtools.model.container import (
    DEFAULT_STOP_GRACE_S,
    AppliedMount,
    ContainerSettings,
    Gpus,
    check_gpus,
    mount_target,
    normalise_capability,
    parse_gpus_option,
)
from mdivicomtools.model.contract import ContainerSpec
from mdivicomtools.model.options import RunOptions
from mdivicomtools.runner.fingerprint import ROOT, fingerprint
from mdivicomtools.settings import ContainerDefaults, config_file, configured_container


def _size(value: str | int | None, what: str, *, memory: bool = False) -> int | None:
    if value is None:
        return None
    try:
        return parse_memory(value, what) if memory else parse_size(value, what)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _config_gpus(value: str | int | list[str] | None) -> Gpus | None:
    if value is None:
        return None
    where = f"[container] gpus in {str(config_file())!r}"
    try:
        gpus = parse_gpus_option(str(value)) if isinstance(value, str | int) else value
        check_gpus(gpus, where)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return gpus


def mount_fingerprint(path: Path) -> str:
    """sha256 over relative paths, sizes and modification times: cheap for a model cache
    of many gigabytes, and different as soon as a file is rewritten or touched.

    Not the inode or the inode's change time, which the dataset check compares
    (runner.fingerprint): a cache copied with its times (cp -a, rsync -a,
    restored from a backup) or made readable with chmod holds the same files
    and must keep its fingerprint, or a rerun would call the model changed.
    """
    tree: list[tuple[str, tuple[str | int, ...]]]
    if path.is_dir():
        # runner.fingerprint gives (kind, size, mtime, ctime or a folder's mode, inode):
        # the first three, and not the root's entry (the folder's own mode and inode)
        tree = [(rel, entry[:3]) for rel, entry in sorted(fingerprint(path).items()) if rel != ROOT]
    else:
        stat = path.stat()
        tree = [(path.name, ("f", stat.st_size, stat.st_mtime_ns))]
    return hashlib.sha256(json.dumps(tree, separators=(",", ":")).encode()).hexdigest()


def _mounts(
    spec: ContainerSpec, options: RunOptions, defaults: ContainerDefaults, run_out_dir: Path
) -> list[AppliedMount]:
    given: dict[str, tuple[str, str]] = {
        name: (path, f"[container.mounts] {name} in {str(config_file())!r}")
        for name, path in defaults.mounts.items()
        if name in spec.mounts
    }
    for item in options.mounts:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(
                f"--mount {item!r}: expected NAME=PATH, e.g. --mount models=/srv/models"
            )
        if name not in spec.mounts:
            declared = ", ".join(sorted(spec.mounts)) or "none"
            raise UsageError(
                f"--mount {item!r}: the plugin declares no mount named {name!r} "
                f"(declared: {declared}); nothing undeclared is mounted"
            )
        given[name] = (path, f"--mount {item}")
    applied = []
    out_root = run_out_dir.resolve()
    for name, decl in sorted(spec.mounts.items()):
        if name not in given:
            if decl.required:
                raise UsageError(
                    f"the plugin needs the read-only mount {name!r} at {decl.target}"
                    f"{f' ({decl.description})' if decl.description else ''}; give "
                    f"--mount {name}=PATH or set it under [container.mounts] in the user config"
                )
            continue
        raw, origin = given[name]
        source = expand_home(raw).absolute()
        if not source.exists():
            raise UsageError(f"{origin}: {str(source)!r} does not exist")
        real = source.resolve()
        if real == out_root or out_root in real.parents:
            raise UsageError(
                f"{origin}: {str(source)!r} is inside --out {str(run_out_dir)!r}; a mount the "
                "run reads must not be where runs write"
            )
        applied.append(
            AppliedMount(
                name=name,
                source=str(real),
                target=mount_target(decl.target),
                fingerprint=mount_fingerprint(real),
            )
        )
    return applied


def container_settings(
    spec: ContainerSpec, options: RunOptions, run_out_dir: Path
) -> ContainerSettings:
    """Resolve the manifest, the user config and the run options into one value."""
    defaults = configured_container()
    resources = spec.resources
    where = f"[container] in {str(config_file())!r}"
    memory = _size(options.memory, "--memory", memory=True) or _size(
        defaults.memory, f"{where}: memory", memory=True
    )
    shm = _size(options.shm_size, "--shm-size") or _size(defaults.shm_size, f"{where}: shm_size")
    cpus = options.cpus if options.cpus is not None else defaults.cpus
    if cpus is not None and not is_positive(cpus):
        given = "--cpus" if options.cpus is not None else f"{where}: cpus"
        raise UsageError(f"{given} must be more than 0 and finite, got {cpus:g}")
    gpus: Gpus | None
    if options.gpus is not None:
        try:
            gpus = parse_gpus_option(options.gpus)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif defaults.gpus is not None:
        gpus = _config_gpus(defaults.gpus)
    else:
        gpus = resources.gpus if resources is not None else None
    grace = options.stop_grace if options.stop_grace is not None else defaults.stop_grace_s
    if grace is not None and not 0 <= grace <= 3600:
        given = "--stop-grace" if options.stop_grace is not None else f"{where}: stop_grace_s"
        raise UsageError(f"{given} must be between 0 and 3600 seconds, got {grace:g}")
    if grace is None:
        grace = spec.stop_grace_s if spec.stop_grace_s is not None else DEFAULT_STOP_GRACE_S
    if resources is not None:
        memory = memory or _size(resources.memory, "container.resources.memory", memory=True)
        shm = shm or _size(resources.shm_size, "container.resources.shm_size")
        cpus = cpus if cpus is not None else resources.cpus
    return ContainerSettings(
        memory=memory,
        cpus=cpus,
        shm_size=shm,
        pids=resources.pids if resources is not None else None,
        gpus=gpus,
        mounts=_mounts(spec, options, defaults, run_out_dir),
        stop_grace_s=float(grace),
        capabilities=sorted({normalise_capability(c) for c in spec.capabilities}),
        read_only_rootfs=spec.read_only_rootfs,
    )
