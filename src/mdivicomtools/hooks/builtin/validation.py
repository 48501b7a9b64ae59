"""Built-in pre-run checks: dataset, output folder, config schema, existing output."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdivicomtools.common.pathlimits import path_too_long, shortened
from mdivicomtools.common.secrets import scrub
from mdivicomtools.common.text import close_matches, one_line
from mdivicomtools.common.timefmt import stamp_id
from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.model.layout import (
    BATCHES_DIR,
    RUNS_DIR,
    STAGING_DIR,
    WORK_DIR,
    managed_folders,
    runs_dir,
    staging_root,
)
from mdivicomtools.model.run import RunRequest
from mdivicomtools.records.digest import MANIFESTS_DIR
from mdivicomtools.records.owner import existing_output_problems, output_owner
from mdivicomtools.records.promotion import PREVIOUS


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_dataset(request: RunRequest) -> list[str]:
    dataset = request.dataset_dir
    too_long = path_too_long(str(dataset))
    if too_long is not None:
        return [f"--dataset {shortened(str(dataset))!r} cannot be used: {too_long}"]
    try:
        exists, is_dir = dataset.exists(), dataset.is_dir()
    except OSError as exc:
        # inside a folder this user may not enter: was reported as this hook crashing
        return [
            f"--dataset {str(dataset)!r} cannot be read ({exc.strerror or exc}); check its "
            "permissions or ask its owner"
        ]
    if not exists:
        return [f"--dataset {str(dataset)!r} does not exist; give an existing dataset folder"]
    if not is_dir:
        return [f"--dataset {str(dataset)!r} is not a folder; give the dataset's folder"]
    return []


def own_path_headroom(out: Path, plugin_id: str) -> int:
    """Bytes the deepest path a run writes itself adds to --out: the output it
    moves aside (`_staging/<run_id>/.previous-<id>`) or the dataset's file list
    while it is written (`_runs/datasets/.<run_id>.json.tmp`)."""
    run_id = stamp_id()
    deepest = [
        staging_root(out, run_id) / f"{PREVIOUS}{plugin_id}",
        runs_dir(out) / MANIFESTS_DIR / f".{run_id}.json.tmp",
    ]
    return max(len(os.fsencode(path)) for path in deepest) - len(os.fsencode(out))


def check_out_dir(request: RunRequest) -> list[str]:
    given = request.run_out_dir
    too_long = path_too_long(str(given), own_path_headroom(given, request.plugin.id))
    if too_long is not None:
        # refused here: past PATH_MAX the run's own first write failed, after
        # validation said ok, with `cannot write its record ...; free space`
        return [f"--out {shortened(str(given))!r} is too long for a run: {too_long}"]
    out = request.run_out_dir.resolve()
    dataset = request.dataset_dir.resolve()
    if out.exists() and not out.is_dir():
        return [f"--out {str(out)!r} exists and is not a folder; choose a folder for the outputs"]
    if _inside(out, dataset):
        return [
            f"--out {str(out)!r} is inside the dataset {str(dataset)!r}, which must stay "
            "read-only; choose an output folder outside the dataset"
        ]
    # a dataset inside --out is how plugins chain (the next plugin reads
    # <out>/<other-id>/dataset), but never inside what this run replaces or manages
    if any(_inside(dataset, folder) for folder in managed_folders(out, request.plugin.id)):
        return [
            f"the dataset {str(dataset)!r} is inside {str(out / request.plugin.id)!r} or "
            f"the run's own folders under --out, which this run would replace or write; "
            "copy it elsewhere or choose another --out"
        ]
    return (
        check_one_file_system(out, request.plugin.id)
        + check_out_nesting(out)
        + check_work_dir(request, out, dataset)
    )


def check_one_file_system(out: Path, plugin_id: str) -> list[str]:
    """`<out>/_staging/` and `<out>/<id>/` must be on --out's own file system.

    A run's output goes into place by rename, the only move that is atomic,
    and a rename cannot cross file systems: with a tmpfs mounted on
    `_staging/` (for speed, or linked there) or a mount point as `<out>/<id>/`, the run did all
    its work and then failed `PromotionError: ... [Errno 18] Invalid
    cross-device link` (or `[Errno 16] Device or resource busy`).
    """
    try:
        device = out.stat().st_dev
    except OSError:  # not made yet: nothing in it is a mount
        return []
    problems = []
    # staging happens through a symlinked `_staging/`; the output folder itself
    # moves by renaming what is there, a symlink as it is
    for folder, follow in ((out / STAGING_DIR, True), (out / plugin_id, False)):
        try:
            other = (folder.stat() if follow else folder.lstat()).st_dev
        except OSError:
            continue
        if other != device:
            problems.append(
                f"{str(folder)!r} is on another file system than --out {str(out)!r} (a mount "
                "point, or a link to one?): outputs move into place by rename, which cannot "
                "cross file "
                "systems; unmount it, or choose another --out"
            )
    return problems


def check_out_nesting(out: Path) -> list[str]:
    """--out must not lie inside what another run root's records describe (a
    plugin's output, or its `_runs`, `_staging`, `_batches`): a run there would
    change files another record lists, and `verify` of that run would fail. A
    run root beside another's outputs, or a batch's session folder, is fine."""
    for root in out.parents:
        if not runs_dir(root).is_dir():
            continue
        top = root / out.relative_to(root).parts[0]
        if top.name in (RUNS_DIR, STAGING_DIR, BATCHES_DIR):  # _reruns/ holds run roots
            return [
                f"--out {str(out)!r} is inside {str(top)!r}, which mdivicom manages for the "
                f"runs recorded in {str(root)!r}; choose an --out outside it"
            ]
        owner = output_owner(root, top.name)
        if owner is not None:
            return [
                f"--out {str(out)!r} is inside {str(top)!r}, the output of "
                f"{owner[0]}/{top.name} (run {owner[1]}) recorded in {str(root)!r}; a run there "
                "would change files that record lists; choose an --out outside it"
            ]
    return []


def check_work_dir(request: RunRequest, out: Path, dataset: Path) -> list[str]:
    """A --work folder is the plugin's to write: it must not reach into the dataset
    or into --out (either way round), or a plugin could change the dataset, other
    plugins' outputs or the records through it, and a failed run would leave
    earlier outputs damaged. The default one lives in the run's staging folder."""
    if request.work_dir == staging_root(request.run_out_dir, request.run_id) / WORK_DIR:
        return []
    work = request.work_dir.resolve()
    given = str(request.work_dir)
    # the plugin gets the folder made for it: a file there, or on the way to it, failed
    # the run (NotADirectoryError, exit 1) after validation had passed it
    existing = next(p for p in (work, *work.parents) if p.exists())
    if not existing.is_dir():
        where = "exists" if existing == work else f"is below {str(existing)!r}, which exists"
        return [f"--work {given!r} {where} and is not a folder; choose a folder for the work files"]
    unwritable = _unwritable(existing)
    if unwritable is not None:
        # the run started and then failed (`OSError: the run could not continue:
        # [Errno 30] Read-only file system`), recorded as if the plugin had failed
        return [f"--work {given!r} cannot be written: {unwritable}; choose a writable work folder"]
    for folder, what, fix in (
        (dataset, "the dataset", "must stay read-only"),
        (out, "--out", "holds the outputs and run records"),
    ):
        if _inside(work, folder):
            return [
                f"--work {given!r} is inside {what} {str(folder)!r}, which {fix}; choose a "
                f"work folder outside {what}"
            ]
        if _inside(folder, work):
            return [
                f"--work {given!r} holds {what} {str(folder)!r}, which {fix}; choose a work "
                f"folder that does not contain {what}"
            ]
    return []


def _unwritable(folder: Path) -> str | None:
    """Why no file can be made in `folder` (an existing folder), else None."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # statvfs is POSIX only
        read_only = False
    if read_only:
        return f"{str(folder)!r} is on a read-only file system"
    return f"this user may not write into {str(folder)!r}"


def _location(path: Any) -> str:
    text = "config"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def check_config(request: RunRequest) -> list[str]:
    """Validate the config against the plugin's `config_schema` (JSON Schema)."""
    schema = request.spec.meta.config_schema
    if schema is None:
        return []
    import jsonschema  # 150 ms: paid only by plugins that declare a config_schema

    validator_cls = jsonschema.validators.validator_for(schema)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [
            f"plugin {request.plugin.ref} declares an invalid config_schema ({exc.message}); "
            "report this to the plugin's authors"
        ]
    from referencing.exceptions import Unresolvable  # jsonschema's own dependency

    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    try:
        errors = sorted(validator.iter_errors(request.config), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        # a `$ref` to a definition that is not there, or to a URL (nothing is
        # fetched): the plugin's fault, which read as this hook raising
        # `_WrappedReferencingError`
        ref = getattr(exc, "ref", None)
        what = f"$ref {ref!r}" if isinstance(ref, str) else "$ref"
        remote = " (mdivicomtools fetches no remote schema)" if "://" in str(ref) else ""
        return [
            f"plugin {request.plugin.ref} declares a config_schema whose {what} cannot be "
            f"resolved{remote}: {one_line(str(exc), 200)}; report this to the plugin's authors"
        ]
    # a validator quotes the offending value: never a secret's
    return [
        scrub(
            f"{_location(error.absolute_path)}: {_config_problem(error)}{_quote_hint(error)}",
            request.config,
        )
        for error in errors
    ]


def _quote_hint(error: Any) -> str:
    """How to give as text a value that `--set` read as JSON.

    `--set pattern=5` (or `=true`, `=null`) makes a number, not the text the
    user typed, and `5 is not of type 'string'` did not say why; the same
    holds for a `--config` file that wrote the value unquoted.
    """
    expected = error.validator_value
    wanted = [expected] if isinstance(expected, str) else expected
    path = list(error.absolute_path)
    if (
        error.validator != "type"
        or not isinstance(wanted, list)
        or "string" not in wanted
        or isinstance(error.instance, (str, dict, list))
        or not path
        or not all(isinstance(part, str) for part in path)
    ):
        return ""
    key, text = ".".join(path), json.dumps(error.instance)
    return f"; to give it as text, quote it: --set '{key}=\"{text}\"'"


def _config_problem(error: Any) -> str:
    """jsonschema's message, but an unknown key as such, with the keys there are.

    `Additional properties are not allowed ('patern' was unexpected)` is the
    schema's word for a misspelt `--set patern=...`: it names neither the keys
    the plugin takes nor the one that was meant.
    """
    schema, instance = error.schema, error.instance
    if error.validator != "additionalProperties" or not isinstance(instance, dict):
        return str(error.message)
    declared = schema.get("properties") if isinstance(schema, dict) else None
    known = sorted(declared) if isinstance(declared, dict) else []
    patterns = schema.get("patternProperties") or {}
    unknown = [key for key in instance if key not in known and not _matches(patterns, key)]
    if not unknown:
        return str(error.message)
    parts = []
    for key in unknown:
        close = close_matches(key, known)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    keys = ", ".join(known) if known else "none"
    noun = "unknown key" if len(unknown) == 1 else "unknown keys"
    return f"{noun} {', '.join(parts)}; the plugin's keys here: {keys}"


def _matches(patterns: object, key: str) -> bool:
    """Whether `key` matches one of a schema's `patternProperties` (an invalid
    pattern matches nothing: the schema check has let it through)."""
    for pattern in patterns if isinstance(patterns, dict) else ():
        try:
            if re.search(pattern, key):
                return True
        except (re.error, TypeError):
            continue
    return False


@hookimpl
def mdivicom_validate_run(request: RunRequest) -> list[str]:
    problems = check_dataset(request)
    unreachable: list[str] = []
    if not problems:
        problems += _reachable(check_out_dir, request, unreachable)
    problems += check_config(request)
    if not unreachable:  # the output folder below it is as far out of reach
        problems += _reachable(existing_output_problems, request, unreachable)
    return problems


def _reachable(
    check: Callable[[RunRequest], list[str]], request: RunRequest, unreachable: list[str]
) -> list[str]:
    """`check`'s problems, or the path it could not look at as one (also added to
    `unreachable`).

    An --out or --work below a folder this user may not enter (a relative
    path run from another user's home, as `sudo -u` leaves the working
    folder) raised PermissionError, shown as `validation hook
    'mdivicomtools.validation' raised PermissionError`: a fault of the hook.
    """
    try:
        return check(request)
    except OSError as exc:
        where = f"{str(exc.filename)!r}" if exc.filename else "--out or --work"
        unreachable.append(
            f"cannot use {where} ({exc.strerror or exc}): this user may not reach it; fix the "
            "permissions of the folders on the way, or choose --out and --work elsewhere"
        )
        return unreachable[-1:]
