"""Field tables for docs/reference/, generated from the msgspec Structs.

The run record and the plugin manifest are file formats that other tools read,
so their reference pages must list exactly the fields the Structs have. A table
typed by hand drifts the day someone adds a field; here the names, types,
defaults and required-ness come from the Structs themselves (through
`msgspec.inspect`), and only the meaning of each field is written by a person,
in MEANINGS below. A field without a meaning, or a meaning for a field that no
longer exists, is reported by `problems()`, so the docs cannot silently fall
behind the code.

The pages keep their prose; each generated table sits between two markers:

    <!-- generated: run-record fields -->
    ...
    <!-- end generated -->

Regenerate with:  python -m mdivicomtools.reference docs/reference
(`--check` only reports stale pages). tests/test_docs_reference.py fails when a
page is out of date.

This module imports only `model` and `common`: it describes the vocabulary and
must not depend on the machinery that uses it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import msgspec.inspect as mi

from mdivicomtools.common.entrypoints import Distribution
from mdivicomtools.model.container import AppliedMount, ContainerSettings, MountDecl, Resources
from mdivicomtools.model.contract import ContainerSpec, PluginMeta
from mdivicomtools.model.run import (
    EXIT_CODES,
    BackendInfo,
    BundleSummary,
    ContainerInfo,
    DatasetInfo,
    ErrorInfo,
    HookError,
    HostInfo,
    InputBundle,
    OutputFile,
    PluginInfo,
    RunnerInfo,
    RunRecord,
)

BEGIN = "<!-- generated: {name} -->"
END = "<!-- end generated -->"
_BLOCK_RE = re.compile(
    r"(?P<begin><!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)"
    r"(?P<end><!-- end generated -->)",
    re.DOTALL,
)

#: what each field means; the only hand-written part of the tables
MEANINGS: dict[type[msgspec.Struct], dict[str, str]] = {
    RunRecord: {
        "schema": "Always `mdivicomtools.run.v1` for this layout; a reader checks it first.",
        "run_id": "`<UTC YYYYmmddTHHMMSSZ>_<8 hex>`; also the file name of the record and "
        "of the log.",
        "status": "How the run ended; `mdivicom run` exits with the status's code "
        "(see [Exit codes](exit-codes.md)). `running` while the run is in progress; "
        "`abandoned` once `runs clean` or a later run found its runner dead.",
        "plugin": "Which plugin ran, see [`plugin`](#plugin).",
        "backend": "What ran it, see [`backend`](#backend).",
        "dataset_dir": "Absolute path of `--dataset`.",
        "out_dir": "Absolute path of the plugin's output folder, `<run root>/<id>`.",
        "run_out_dir": "Absolute path of the run root (`--out`).",
        "work_dir": "Absolute path of the work folder: `--work`, or a temporary folder "
        "inside `_staging/` that is deleted with it.",
        "config": "The config the plugin received, with the value of every secret-looking "
        "key replaced by `***REDACTED***`.",
        "config_sha256": "sha256 of the unredacted config in canonical JSON (see below).",
        "started_at": "ISO-8601 UTC with milliseconds, e.g. `2026-11-25T15:33:22.481Z`.",
        "finished_at": "ISO-8601 UTC with milliseconds, after finalisation and provenance.",
        "duration_s": "Seconds from start to finish, rounded to milliseconds.",
        "exit_code": "What the plugin itself ended with: 0 when it returned; 1 for an "
        "exception in-process; an isolated child's or a container's exit status; null "
        "when a timeout or an interrupt stopped the run, and for a container dry run. "
        "A run can still fail after a 0 (a changed dataset, a validation or finalise "
        "hook): `status` and `error` say whether it succeeded.",
        "error": "null, or what went wrong, see [`error`](#error).",
        "outputs": "Every file of a successful run's output, see [`outputs[]`](#outputs); "
        "empty for any other status.",
        "resultbundles": "Every `resultbundle.json` a successful run wrote, as validated "
        "after the run, see [`resultbundles[]`](#resultbundles).",
        "host": "The machine and software, see [`host`](#host).",
        "extensions": "`{hook module name: the dict its provenance hook returned}`.",
        "container": "For container runs, the image and container that ran, see "
        "[`container`](#container); null for python runs.",
        "dry_run": "Whether `--dry-run` was given.",
        "result": "The plugin's JSON-safe return value (a container dry run keeps the "
        "container plan in `result.plan`).",
        "log": "The run log, relative to `run_out_dir` (`_runs/<run_id>.log`).",
        "warnings": "Notes for people, e.g. a return value that was not JSON-safe or an "
        "invalid result bundle.",
        "hook_errors": "Hook implementations that raised or returned something unusable, "
        "and hook modules that failed to load (hook `(load)`), see "
        "[`hook_errors[]`](#hook_errors).",
        "runner": "The process that ran the run, see [`runner`](#runner); `runs list` and "
        "`runs show` use it to show a `running` record whose runner died as `abandoned`.",
        "dataset": "What the dataset was when the run started, see [`dataset`](#dataset); "
        "null in older records.",
        "rerun_of": "The `run_id` this run repeats (`mdivicom rerun`), else null.",
        "input_bundles": "Every `resultbundle.json` in the dataset when the run started, "
        "and, for a dataset inside another plugin's output, those in the folders above it "
        "up to that output (a batch session's view): which bundles, and which producer "
        "runs, a chained run consumed, see [`input_bundles[]`](#input_bundles).",
        "attempt": "Which try of a batch session this run was (`--retries`): 1 for a first "
        "try and for single runs. A try whose worker was lost is recorded by the batch, with "
        "error type `WorkerLost`.",
        "timeout_s": "The run's `--timeout` in seconds, or null for none; `rerun` repeats it "
        "unless given another.",
        "isolate": "Whether the python plugin ran in a child process (`--isolate`); `rerun` "
        "repeats it.",
    },
    DatasetInfo: {
        "files": "Number of files (symlinks to files count, and are followed; a symlink "
        "that leads to no file, such as one to a folder or a dangling one, counts once and is "
        "not followed).",
        "bytes": "Their total size.",
        "fingerprint": "sha256 over each file's relative path, size and mtime_ns, in path "
        "order: a stat walk that notices changes on this machine.",
        "digest": "With `--hash-dataset`: sha256 over each relative path and the sha256 of "
        "its content, in path order; proves the content wherever it is copied. Else null.",
        "manifest": "The per-file list beside the record, relative to `run_out_dir` "
        "(`_runs/datasets/<sha256>.json`, named by the sha256 of its content, so runs over an "
        "unchanged dataset share one file; records of earlier releases name "
        "`_runs/datasets/<run_id>.json`), so `verify` and `--resume` can name changed files.",
    },
    PluginInfo: {
        "id": "`meta.id`.",
        "publisher": "`meta.publisher`, or `local` when the plugin names none.",
        "version": "`meta.version`.",
        "kind": "`python` or `container`.",
        "api_version": "The contract version the plugin declared.",
        "source": "Where it was found: `entry_point` (an installed package) or `manifest` "
        "(a file in `MDIVICOM_PLUGIN_PATH`).",
        "distribution": "The installed distribution behind an entry-point plugin, see "
        "[`plugin.distribution`](#plugindistribution); null for manifest files.",
    },
    Distribution: {
        "name": "Distribution name, as pip knows it.",
        "version": "Its installed version.",
    },
    BackendInfo: {
        "name": "The backend's name, as `--backend` takes it (`python`, `docker`, ...).",
        "engine": "What the backend reported running on, e.g. the Python implementation "
        "and version, or the container engine.",
    },
    ErrorInfo: {
        "type": "An exception type or a named condition: `DatasetModified`, `Timeout`, "
        "`Interrupted`, `ContainerFailed`, `InvalidResultBundle`, ...",
        "message": "One line saying what happened.",
    },
    OutputFile: {
        "path": "Relative to `out_dir`, with `/` separators; escaped when the name is not "
        "UTF-8 (see `escaped`).",
        "size": "Bytes (of a symlink: the length of its target).",
        "sha256": "Hex digest of the file's content; of a symlink, of `symlink:` and its "
        "target text, so a link pointed elsewhere differs (empty in older records).",
        "type": "`file`, or `symlink` for a symlink that stays inside the output folder "
        "(folders are implied by the paths; special files are never promoted).",
        "escaped": "`true` when the name was not UTF-8: `path` then has every backslash "
        "doubled and every byte that is not UTF-8 written as `\\xNN`.",
    },
    RunnerInfo: {
        "pid": "The runner's process id.",
        "hostname": "The machine it ran on.",
        "boot_id": "The kernel's boot id, so a record from before a reboot is known dead.",
    },
    BundleSummary: {
        "path": "The sidecar, relative to `out_dir`.",
        "type": "Its `resultbundle_type`, when it could be read.",
        "schema_version": "Its `schema_version`, when it could be read.",
        "valid": "Whether it passed validation.",
        "problems": "Each problem on one line, with a JSON pointer or the file it concerns.",
    },
    InputBundle: {
        "path": "The sidecar, relative to `dataset_dir` (`../../resultbundle.json` for "
        "one above it).",
        "type": "Its `resultbundle_type`, when it could be read.",
        "schema_version": "Its `schema_version`, when it could be read.",
        "producer": "Its `producer.tool_ref`: the plugin that wrote it.",
        "producer_run_id": "Its `producer.pipeline_run_id`: the run whose output the "
        "dataset was, still named after that plugin runs again and replaces the folder.",
        "sha256": "The sha256 of the sidecar as read; null when it could not be read (a "
        "symlink out of the dataset, a file that is not regular or too large).",
    },
    HostInfo: {
        "hostname": "The machine's network name.",
        "platform": "Operating system and release.",
        "python": "The Python that ran mdivicomtools.",
        "mdivicomtools": "The mdivicomtools version.",
        "slurm_job_id": "`$SLURM_JOB_ID` when the run ran inside a Slurm job (a session on "
        "`--executor slurm`, or any run inside an allocation); absent otherwise.",
    },
    ContainerInfo: {
        "image": "The image as the manifest names it (a rerun's: as the original's record "
        "does; the id it pinned is `image_id`).",
        "image_id": "The id of the image the container was created from, as the engine spells it.",
        "repo_digests": "The image's repository digests, as the engine reports them.",
        "container_id": "The container's id.",
        "exit_code": "The container's exit status.",
        "oom_killed": "Whether the engine killed it for running out of memory.",
        "engine": "The engine's name.",
        "engine_version": "The engine's version.",
        "endpoint": "The engine socket or URL that was used.",
        "applied": "The limits, named mounts and hardening the container ran under "
        "(`container.applied` below); null in records of older releases.",
    },
    ContainerSettings: {
        "memory": "Memory limit in bytes (swap included); null: the engine's default (none).",
        "cpus": "CPU limit in CPUs; null: none.",
        "shm_size": "Size of `/dev/shm` in bytes; null: the engine's default (64 MiB).",
        "pids": "Most processes and threads at once; null: the engine's default.",
        "gpus": '`"all"`, a count or device ids; null: no GPU.',
        "mounts": "The named read-only mounts, with host path and fingerprint.",
        "stop_grace_s": "Seconds between SIGTERM and SIGKILL when the container was stopped.",
        "capabilities": "Linux capabilities added back after all were dropped.",
        "read_only_rootfs": "Whether the image's filesystem was read-only (with a tmpfs `/tmp`).",
        "init": "Whether an init process ran as PID 1 (always, in this release).",
        "no_new_privileges": "Whether no-new-privileges was set (always, in this release).",
    },
    AppliedMount: {
        "name": "The mount's name in the manifest.",
        "source": "The host path, symbolic links resolved.",
        "target": "Where the container saw it (read-only).",
        "fingerprint": "sha256 over the relative paths, sizes and modification times under "
        "`source` (contents are not read): a different value means different files.",
    },
    HookError: {
        "hook": "The hook that was called.",
        "plugin": "The hook module's name (its entry-point name, or "
        "`mdivicomtools.<name>` for a built-in).",
        "error": "`Type: message` on one line.",
    },
    PluginMeta: {
        "api_version": "`mdivicomtools.plugin.v0.1`; a plugin for another major version is "
        "listed as broken.",
        "id": "A slug: 1-64 lowercase letters, digits, `.`, `_` or `-`, starting with a "
        "letter or digit. It names the output folder.",
        "kind": "`python` (with `entry.callable`) or `container` (with a `container` section).",
        "version": "The plugin's own version, kept in every run record.",
        "description": "One line for `plugins list`.",
        "publisher": "A slug like `id`; `<publisher>/<id>` is the full reference. Without "
        "it the publisher is `local`.",
        "inputs": "What the plugin reads, free-form; shown by `plugins info`.",
        "outputs": "What the plugin writes, free-form; shown by `plugins info`.",
        "config_schema": "A JSON Schema; the config is checked against it before the run.",
        "homepage": "A URL.",
        "license": "An SPDX identifier, e.g. `MIT`.",
        "authors": 'Names, or objects such as `{"name": ..., "email": ...}`.',
    },
    ContainerSpec: {
        "image": "The image reference, fully qualified (`localhost/tools:1.0`, "
        "`docker.io/library/busybox:1.36`); `name@sha256:...` pins it, and a run refuses an "
        "image whose repository digests do not include that digest. A reference the engines "
        "cannot parse makes the plugin broken; a short name (no registry) gets a note.",
        "command": "argv list (no element may hold a NUL byte), placeholders expanded; null "
        "(or `[]`) keeps the image's CMD, "
        "unless `entrypoint` is given: as with `docker run --entrypoint`, that drops the "
        "image's CMD too.",
        "entrypoint": "argv list (no NUL bytes either), placeholders expanded; null keeps the "
        "image's ENTRYPOINT, "
        '`[]` (or `[""]`) clears it (and the image\'s CMD: `command` is then required).',
        "env": "Extra environment variables; the `MDIVICOM_*`, `HOME` and `TMPDIR` "
        "variables the runner sets win over these. A name is letters, digits and `_`, "
        "not starting with a digit; a value may not contain a NUL byte.",
        "network": "`false`: no network at all (`none`); `true`: the engine's default network.",
        "pull": "`missing`: pull only when absent; `always`; `never`: a missing image stops "
        "the run before it starts.",
        "resources": "Limits the tool runs under (`container.resources` below); the user "
        "config and `--memory`, `--cpus`, `--shm-size`, `--gpus` override them.",
        "mounts": "Named read-only host folders the tool needs, by name "
        "(`container.mounts.<name>` below); the user gives the host path with "
        "`--mount NAME=PATH`.",
        "stop_grace_s": "Seconds the tool gets between SIGTERM and SIGKILL when it is stopped "
        "(timeout, Ctrl-C); null: 5. `stop_grace_s` under `[container]` in the user config, "
        "then `--stop-grace`, override it.",
        "capabilities": 'Linux capabilities given back after all are dropped, e.g. `["SYS_NICE"]`; '
        "shown in the plan and recorded. `ALL` and those that would undo the read-only "
        "mounts or reach the host (`SYS_ADMIN`, `DAC_READ_SEARCH`, `SYS_MODULE`, ...; see "
        "[Container plugins](../container-plugins.md#capabilities)) are refused.",
        "read_only_rootfs": "`true`: the image's filesystem is read-only and `/tmp` a tmpfs "
        "(the image's own `VOLUME`s stay writable, fresh per container).",
    },
    Resources: {
        "memory": 'Memory limit: bytes, or a size such as `"512m"` or `"8g"` (powers of 1024); '
        "swap counts against it. A container that exceeds it ends `failed`, "
        "`OutOfMemory`.",
        "cpus": "CPU limit in CPUs, e.g. `2` or `0.5`.",
        "shm_size": 'Size of `/dev/shm`, e.g. `"1g"` (PyTorch data loaders need more than '
        "the engine's 64 MiB).",
        "pids": "Most processes and threads at once.",
        "gpus": '`"all"`, a count, or device ids such as `["0", "1"]`; Docker gets device '
        "requests, Podman CDI devices `nvidia.com/gpu=...`.",
    },
    MountDecl: {
        "target": "Absolute path in the container, e.g. `/models`, without `..`; not `/` and "
        "not in or under `/mdivicom`, `/tmp`, `/proc`, `/sys` or `/dev`, checked after `//`, "
        "`/./` and a trailing `/` are removed (the record keeps it so: `//models/` is "
        "`/models`). No two mounts may share a target.",
        "required": "`true`: a run without a host path for it stops before it starts.",
        "description": "What the user should mount here; shown in the error when it is missing.",
    },
}

#: when a run ends with each status; the exit status itself comes from EXIT_CODES
STATUS_MEANINGS: dict[str, str] = {
    "succeeded": "The plugin finished and no finalisation hook failed the run; its output "
    "replaced `<out>/<id>/`.",
    "dry_run": "`--dry-run` finished; nothing was kept.",
    "failed": "An exception, a crash, a non-zero exit, a modified dataset, an invalid result "
    "bundle with `--strict-bundles`, a finalisation hook that failed the run, a pull the "
    "engine refused (`PullFailed`), or a runner process that died from a signal "
    "(`RunnerCrashed`, written by the `mdivicom` supervisor).",
    "timed_out": "`--timeout` expired (for the plugin, or for the pull of its image) and the "
    "plugin or the pull was stopped.",
    "interrupted": "Ctrl-C, SIGTERM, SIGQUIT or SIGHUP (the terminal closed) stopped the run.",
}

#: statuses a record can have that are not the end of a run (no exit status)
UNFINISHED_MEANINGS: dict[str, str] = {
    "running": "Written when the run starts, before anything is staged; replaced by the "
    "final record.",
    "abandoned": "A `running` record whose runner died (SIGKILL of `mdivicom` itself, a lost "
    "machine, `MDIVICOM_SUPERVISOR=0`); `runs list` "
    "shows it so, and `runs clean` or the next run into the folder removes its staging "
    "and rewrites the record so.",
}

#: fields that are not part of the file format (kept in memory only)
HIDDEN: dict[type[msgspec.Struct], frozenset[str]] = {PluginMeta: frozenset({"extra"})}


def type_name(t: mi.Type) -> str:
    """A field's type in JSON's words, since readers of these pages read JSON files."""
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "boolean"
    if isinstance(t, mi.IntType):
        return "integer"
    if isinstance(t, mi.FloatType):
        return "number"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.AnyType):
        return "any JSON value"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(f'`"{value}"`' for value in t.values)
    if isinstance(t, mi.ListType):
        if isinstance(t.item_type, mi.AnyType):
            return "array"
        return f"array of {_plural(t.item_type)}"
    if isinstance(t, mi.DictType):
        if isinstance(t.value_type, mi.AnyType):
            return "object"
        return f"object of {_plural(t.value_type)}"
    if isinstance(t, mi.StructType):
        return "object"
    if isinstance(t, mi.UnionType):
        return " or ".join(type_name(member) for member in t.types)
    raise TypeError(f"no JSON name for {t!r}; teach reference.type_name about it")


def _plural(t: mi.Type) -> str:
    """`array of strings`, `array of objects`: the item type as the noun of a phrase."""
    name = type_name(t)
    if isinstance(t, mi.UnionType | mi.LiteralType | mi.ListType):
        return f"({name})"
    return name + "s" if name in {"string", "boolean", "integer", "number", "object"} else name


def default_text(field: mi.Field) -> str:
    """`required`, or the default as JSON, which is how it appears in a file."""
    if field.required:
        return "required"
    factory = field.default_factory
    value = factory() if factory is not mi.NODEFAULT else field.default
    return "`" + msgspec.json.encode(value).decode() + "`"


def _cell(text: str) -> str:
    """A table cell: one line, and no bare `|` that would split the column."""
    return " ".join(text.split()).replace("|", "\\|")


def _caption(struct: type) -> str:
    """The Struct's docstring summary: the sentence that says what the object is."""
    doc = (struct.__doc__ or "").strip()
    if not doc or doc.startswith(struct.__name__ + "("):  # msgspec's generated signature
        return ""
    return " ".join(doc.split("\n\n")[0].split())


def field_table(struct: type[msgspec.Struct]) -> str:
    """A Markdown table of one Struct: field, type, default, meaning."""
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    meanings = MEANINGS.get(struct, {})
    hidden = HIDDEN.get(struct, frozenset())
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for field in info.fields:
        if field.name in hidden:
            continue
        cells = [
            f"`{field.encode_name}`",
            type_name(field.type),
            default_text(field),
            meanings.get(field.name, ""),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def sections(parts: Sequence[tuple[str, type[msgspec.Struct]]], level: int = 3) -> str:
    """Several tables, each under a heading named by its path in the file."""
    out = []
    for path, struct in parts:
        out.append(f"{'#' * level} `{path}`\n")
        caption = _caption(struct)
        if caption:
            out.append(f"{caption}\n")
        out.append(field_table(struct))
    return "\n".join(out)


def _record_sections() -> str:
    return sections(
        [
            ("plugin", PluginInfo),
            ("plugin.distribution", Distribution),
            ("backend", BackendInfo),
            ("error", ErrorInfo),
            ("outputs[]", OutputFile),
            ("resultbundles[]", BundleSummary),
            ("input_bundles[]", InputBundle),
            ("host", HostInfo),
            ("container", ContainerInfo),
            ("container.applied", ContainerSettings),
            ("container.applied.mounts[]", AppliedMount),
            ("hook_errors[]", HookError),
            ("dataset", DatasetInfo),
            ("runner", RunnerInfo),
        ]
    )


def status_table() -> str:
    """Each final run status with the exit status `mdivicom run` gives it (EXIT_CODES)."""
    lines = ["| record `status` | exit status | when |", "|---|---|---|"]
    for status, code in sorted(
        EXIT_CODES.items(), key=lambda item: (item[1], item[0] != "succeeded")
    ):
        lines.append(f"| `{status}` | {code} | {_cell(STATUS_MEANINGS.get(status, ''))} |")
    for status, meaning in UNFINISHED_MEANINGS.items():
        lines.append(f"| `{status}` | - | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


#: page (in docs/reference/) -> block name -> what goes between its markers
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "run-record.md": {
        "run-record fields": lambda: field_table(RunRecord),
        "run-record sections": _record_sections,
        "run status exit codes": status_table,
    },
    "exit-codes.md": {
        "run status exit codes": status_table,
    },
    "container-manifest.md": {
        "container fields": lambda: field_table(ContainerSpec),
        "container resources fields": lambda: field_table(Resources),
        "container mount fields": lambda: field_table(MountDecl),
        "meta fields": lambda: field_table(PluginMeta),
    },
}


def problems() -> list[str]:
    """Fields without a meaning and meanings without a field: both mean stale docs."""
    found = []
    for struct, meanings in MEANINGS.items():
        fields = set(struct.__struct_fields__) - HIDDEN.get(struct, frozenset())
        found += [
            f"{struct.__name__}.{name} has no meaning" for name in sorted(fields - set(meanings))
        ]
        found += [
            f"{struct.__name__}.{name} is described but is not a field"
            for name in sorted(set(meanings) - fields)
        ]
    found += [
        f"EXIT_CODES[{s!r}] has no meaning" for s in sorted(set(EXIT_CODES) - set(STATUS_MEANINGS))
    ]
    found += [
        f"status {s!r} is described but is not in EXIT_CODES"
        for s in sorted(set(STATUS_MEANINGS) - set(EXIT_CODES))
    ]
    return found


def update(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    """`text` with every generated block rewritten; a missing or unknown block is an error,
    because a renamed marker would otherwise leave a stale table in place for good."""
    seen: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in blocks:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(blocks)}")
        seen.add(name)
        return match.group("begin") + "\n" + blocks[name]() + "\n" + match.group("end")

    updated = _BLOCK_RE.sub(replace, text)
    missing = [name for name in blocks if name not in seen]
    if missing:
        raise ValueError(
            "missing generated block(s): "
            + ", ".join(f"{BEGIN.format(name=name)} ... {END}" for name in missing)
        )
    return updated


def stale_pages(folder: Path) -> list[Path]:
    """Pages in `folder` whose generated blocks differ from what the Structs say now."""
    stale = []
    for page, blocks in BLOCKS.items():
        text = (folder / page).read_text(encoding="utf-8")
        if update(text, blocks) != text:
            stale.append(folder / page)
    return stale


def write_all(folder: Path) -> list[Path]:
    """Rewrite the generated blocks of every page; returns the pages that changed."""
    changed = []
    for page, blocks in BLOCKS.items():
        path = folder / page
        before = path.read_text(encoding="utf-8")
        after = update(before, blocks)
        if after != before:
            path.write_text(after, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str]) -> int:
    """`python -m mdivicomtools.reference [--check] [FOLDER]` (default docs/reference)."""
    check = "--check" in argv
    args = [arg for arg in argv if arg != "--check"]
    folder = Path(args[0] if args else "docs/reference")
    missing = [page for page in BLOCKS if not (folder / page).is_file()]
    if missing:  # the pages hold written text around the generated blocks: none is made
        sys.stderr.write(
            f"reference: {folder} has no {', '.join(missing)}: give the folder of the "
            "reference pages (docs/reference)\n"
        )
        return 2
    for problem in problems():
        sys.stderr.write(f"reference: {problem}\n")
    if check:
        stale = stale_pages(folder)
        for path in stale:
            sys.stderr.write(f"reference: {path} is out of date\n")
        return 1 if stale or problems() else 0
    for path in write_all(folder):
        sys.stdout.write(f"wrote {path}\n")
    return 1 if problems() else 0


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    sys.exit(main(sys.argv[1:]))
