"""`mdivicom plugins check`: does an installed plugin keep the contract?

Each check is one line, pass, warn or fail: the plugin's registration, its
callable or container image, then a dry run and a real run on a sample openSIDS
session in a temporary sandbox, watching that the dataset stays untouched and
nothing is written outside the plugin's output and work folders, and that the
provenance.json and result bundles it writes are valid. The same function backs
`assert_plugin_conforms` in mdivicomtools.testing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from mdivicomtools.authoring.registration import registration_problems
from mdivicomtools.authoring.sampledata import make_sample_dataset
from mdivicomtools.bundles.resultbundle import validate_file
from mdivicomtools.common.workdir import kept_working_folder
from mdivicomtools.discovery import PLUGIN_PATH_ENV, plugin_path_folders, resolve
from mdivicomtools.discovery.sources import plugin_entry_points
from mdivicomtools.errors import UsageError
from mdivicomtools.execution.python import WROTE_BESIDE_OUT_DIR
from mdivicomtools.execution.python_child import CallableImportError, import_callable
from mdivicomtools.hooks.manager import load_hooks
from mdivicomtools.model.container import runner_owned
from mdivicomtools.model.layout import STAGING_DIR, managed_folders
from mdivicomtools.model.run import RunRecord
from mdivicomtools.runner import ValidationFailed, run_plugin
from mdivicomtools.runner.fingerprint import compare, fingerprint

Status = Literal["pass", "warn", "fail", "skip"]


class Check(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    status: Status
    detail: str


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    found = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_dir() and not path.is_symlink():
            continue  # files are what a plugin leaves behind; folders come with them
        stat = path.lstat()
        found[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


#: the hooks a check calls with the built-in modules only (backends come from every module)
SITE_HOOKS = ("mdivicom_validate_run", "mdivicom_capture_provenance", "mdivicom_finalize_outputs")


def check_plugin(
    ref: str,
    *,
    dataset: str | Path | None = None,
    config: dict[str, Any] | None = None,
    backend: str | None = None,
) -> list[Check]:
    """Run every conformance check on the plugin `ref`; never raises for plugin faults."""
    checks: list[Check] = []

    def add(name: str, status: Status, detail: str) -> None:
        checks.append(Check(name=name, status=status, detail=detail))

    record = resolve(ref, allow_broken=True)
    if not record.ok or record.spec is None:
        reason = record.error or "the plugin is broken"
        value = _entry_point_value(record.origin) if record.source == "entry_point" else None
        missing = re.match(r"import failed: ModuleNotFoundError: No module named '([^']+)'", reason)
        module = value.partition(":")[0] if value else ""
        if missing and value and not f"{module}.".startswith(f"{missing.group(1)}."):
            # `import torch` beside get_plugin(): every listing would need torch (the
            # registration module itself missing is a broken install, said as it is)
            reason += (
                f" (importing {value.partition(':')[0]}, the registration module, which "
                "every listing loads: import what run() needs in the module of "
                "entry.callable, and install it)"
            )
        add("meta", "fail", reason)
        return checks
    meta = record.spec.meta
    add("meta", "pass", f"{record.ref} {meta.version}: valid and JSON-safe ({record.origin})")
    add("api_version", "pass", f"{meta.api_version} is supported")
    # what discovery noticed but accepted: no publisher, a misnamed entry point, a
    # placeholder slip, ignored fields
    for note in record.notes:
        add("note", "warn", note)
    dist = record.distribution
    if dist is not None and meta.version.removeprefix("v") != dist.version:
        # the record keeps both, but the run's MDIVICOM_PLUGIN_VERSION, the bundles'
        # producer.tool_version and `plugins list` say meta.version
        add(
            "version",
            "warn",
            f"meta.version {meta.version} is not the version of its package "
            f"{dist.name} {dist.version}, so result bundles and listings name "
            f"{meta.version} for the code of {dist.version}; read both from one place "
            "(a scaffold's __version__)",
        )
    container = record.spec.container
    replaced = sorted(name for name in container.env if runner_owned(name)) if container else []
    if replaced:
        add(
            "env",
            "warn",
            f"container.env sets {', '.join(replaced)}, which the runner sets itself: "
            "the tool sees the runner's values; drop them from the manifest",
        )
    if record.spec.entry is not None:
        try:
            import_callable(record.spec.entry.callable)
        except CallableImportError as exc:  # the signature too (`signature_problem`)
            add("callable", "fail", str(exc))
            return checks
        add(
            "callable",
            "pass",
            f"{record.spec.entry.callable} imports with the contract's signature",
        )
    value = _entry_point_value(record.origin) if record.source == "entry_point" else None
    if value is not None:
        # the registration is loaded by every listing: heavy imports and prints there
        # cost every command, not the plugin's runs, so nothing else shows them
        problems = registration_problems(value)
        for problem in problems:
            add("registration", "warn", problem)
        if not problems:
            add("registration", "pass", f"{value} loads light and silent")
    # relative paths a plugin writes to land in the sandbox, where they are seen; what
    # the user gave relative to their own folder is made absolute before moving there
    data = Path(dataset).absolute() if dataset is not None else None
    folders = os.pathsep.join(str(folder.absolute()) for folder in plugin_path_folders())
    with (
        tempfile.TemporaryDirectory(prefix="mdivicom-check-") as tmp,
        _pinned_env(PLUGIN_PATH_ENV, folders),
        _chdir(tmp),
    ):
        _run_checks(ref, Path(tmp), data, config or {}, backend, record.spec, add)
    return checks


def _entry_point_value(origin: str) -> str | None:
    """`package.module:get_plugin` of the installed entry point discovery named `origin`."""
    for ep in plugin_entry_points():
        if origin.startswith(f"entry point '{ep.name} = {ep.value}'"):
            return ep.value
    return None


#: paths opened for writing (or removed, renamed, created) while `_writes_seen` is active
_WATCHED: list[set[str]] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "os.rename": 1, "os.truncate": 0}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook (PEP 578): note every path Python code writes, while watched.

    Catches what a python plugin running in this process does through Python
    (open, os.*, shutil); writes from native code or other processes are not seen.
    """
    if not _WATCHED:
        return
    path: Any = None
    if event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        path = args[0] if writing else None
    elif event in _PATH_EVENTS and len(args) > _PATH_EVENTS[event]:
        path = args[_PATH_EVENTS[event]]
    if isinstance(path, (str, bytes, os.PathLike)):
        text = os.path.abspath(os.fsdecode(path))
        if not text.endswith(".pyc") and not text.startswith(("/dev/", "/proc/")):
            _WATCHED[-1].add(text)


_HOOKED: list[bool] = []


@contextlib.contextmanager
def _writes_seen() -> Iterator[set[str]]:
    """The absolute paths Python code writes during the block (audit hooks stay
    installed for the life of the process, so one hook is added once and gated)."""
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    seen: set[str] = set()
    _WATCHED.append(seen)
    try:
        yield seen
    finally:
        _WATCHED.pop()


def _check_image(container: Any, backend: str | None, add: Any) -> bool:
    """Add the `image` line from what the engine has (as the runner asks it); True if it
    fails. A dry run that did not fail proves nothing: it may never have needed the
    image, and only the engine knows whether it is there."""
    from mdivicomtools.execution.container.engine import EngineError
    from mdivicomtools.model.imageref import is_pinned, missing_image_fix
    from mdivicomtools.runner.images import ImagesNotManaged, image_on_engine

    ref = container.image
    try:
        engine, facts = image_on_engine(ref, backend)
    except ImagesNotManaged as exc:
        # a site's own container backend: its preflight() checks the image before
        # the dry run below, which fails naming the problem if it is not there
        add(
            "image",
            "warn",
            f"{ref} not checked here: backend {exc.backend!r} does not report images to "
            "mdivicomtools; its own pre-run checks (preflight) ran with the dry run",
        )
        return False
    except EngineError as exc:
        add("image", "fail", f"could not ask the engine about {ref}: {exc}")
        return True
    if facts is not None:
        add("image", "pass", f"{ref} is present on {engine} ({facts.id})")
        return False
    fix = missing_image_fix(ref, engine)
    if container.pull == "never":
        add(
            "image",
            "fail",
            f"{ref} is not on {engine} and the pull policy is 'never'; "
            + (fix if is_pinned(ref) else f"load it first: {fix}"),
        )
        return True
    add(
        "image",
        "warn",
        f"{ref} is not on {engine}; every run pulls it first (pull policy "
        f"'{container.pull}'), which needs its registry; to have it beforehand: {fix}",
    )
    return False


def _kept_log(record: RunRecord, out: Path) -> str:
    """The end of a failed run's check line: where a copy of its log is kept.

    The sandbox goes when the check ends, and with it the only traceback of a
    python plugin and the only output of a container; "" when there is no log.
    """
    if record.log is None or not (out / record.log).is_file():
        return ""
    fd, kept = tempfile.mkstemp(prefix=f"mdivicom-check-{record.plugin.id}-", suffix=".log")
    log = (out / record.log).read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(log)
    # a container's error is its exit status only; what it said last is the why
    # (`sh: can't create /mdivicom/dataset/x.txt: Read-only file system`), which
    # a python plugin's error already holds as the exception's message
    last = _last_line(log) if record.plugin.kind == "container" else ""
    said = f"; it last printed {last!r}" if last else ""
    return f"{said}; its log (output and traceback): {kept}"


def _last_line(log: bytes, limit: int = 200) -> str:
    """The last non-blank line of a log, on one line and cut at `limit` characters."""
    for line in reversed(log[-8192:].decode("utf-8", "replace").splitlines()):
        text = " ".join(line.split())
        if text:
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return ""


def _inside(path: Path, root: Path) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root + os.sep)


@contextlib.contextmanager
def _pinned_env(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def _chdir(path: str) -> Iterator[None]:
    """Work in `path`, then go back (`kept_working_folder`: to nowhere, when the
    folder this began in was removed, as a CI job's checkout may be)."""
    with kept_working_folder():
        os.chdir(path)
        yield


def _run_checks(
    ref: str,
    sandbox: Path,
    dataset: str | Path | None,
    config: dict[str, Any],
    backend: str | None,
    spec: Any,
    add: Any,
) -> None:
    if dataset is None:
        data = make_sample_dataset(sandbox / "dataset", sessions=1) / "sessions" / "ses-01"
        where = "a generated sample openSIDS session"
    else:
        data = Path(dataset)
        where = str(data)
    out, work = sandbox / "out", sandbox / "work"
    # what the runner itself manages; everything else must stay as it was
    managed = (*managed_folders(out, spec.meta.id), work)
    image_failed = False
    if spec.container is not None:
        try:
            image_failed = _check_image(spec.container, backend, add)
        except UsageError as exc:
            add("backend", "fail", str(exc))
            return
    # the plugin is checked, not the site: its validation, provenance and
    # finalisation hooks (a consent rule, an archive copy) stay out of these runs
    hooks = load_hooks()
    left_out = hooks.without_site_hooks(SITE_HOOKS)
    if left_out:
        add(
            "site hooks",
            "skip",
            f"not used by the check: {', '.join(left_out)} (this site's validation, "
            "provenance and finalisation hooks; `mdivicom run` uses them)",
        )
    before = fingerprint(data)
    outside_before = _snapshot(sandbox, managed)
    run_in_sandbox = functools.partial(
        run_plugin,
        ref,
        dataset=data,
        out=out,
        work=work,
        config=config,
        backend=backend,
        hooks=hooks,
        # a user config's `hash_dataset = true` made the runner write its digest cache
        # (~/.cache/mdivicomtools) while the writes were watched: the plugin failed
        # `writes only to out_dir` for what the runner wrote
        hash_dataset=False,
    )
    try:
        dry = run_in_sandbox(dry_run=True)
    except ValidationFailed as exc:
        if not image_failed:  # the image line already says what the problem is
            detail = "; ".join(exc.problems)
            if any(problem.startswith("config") for problem in exc.problems):
                # a plugin with a required key cannot be checked on an empty config
                detail += (
                    "; give the check's runs the config they need (plugins check --set "
                    "KEY=VALUE or --config; config= of assert_plugin_conforms)"
                )
            add("validation", "fail", detail)
        return
    except UsageError as exc:
        add("backend", "fail", str(exc))
        return
    add(
        "dry run",
        "pass" if dry.status == "dry_run" else "fail",
        f"status {dry.status}"
        + (f": {dry.error.type}: {dry.error.message}" if dry.error else "")
        + (_kept_log(dry, out) if dry.status != "dry_run" else ""),
    )
    with _writes_seen() as written_anywhere:
        real = run_in_sandbox(overwrite=True)
    detail = f"status {real.status} on {where}, {len(real.outputs)} output file(s)"
    if real.error:
        detail += f": {real.error.type}: {real.error.message}"
    if real.status != "succeeded":
        detail += _kept_log(real, out)
    add("run", "pass" if real.status == "succeeded" else "fail", detail)
    # the record's warnings (a return value that was not kept, the plugin's own
    # `warnings`), but not an invalid bundle's, which has its own resultbundle line
    invalid = tuple(f"result bundle {b.path} is invalid" for b in real.resultbundles if not b.valid)
    # what the plugin wrote beside its out_dir fails the writes line below instead
    beside = [w for w in real.warnings if w.startswith(WROTE_BESIDE_OUT_DIR)]
    for warning in real.warnings:
        if not warning.startswith((*invalid, WROTE_BESIDE_OUT_DIR)):
            add("run warning", "warn", warning)
    changes = compare(before, fingerprint(data))
    add(
        "dataset untouched",
        "fail" if changes else "pass",
        changes.describe() if changes else "no file in the dataset changed",
    )
    outside_after = _snapshot(sandbox, managed)
    written = sorted(set(outside_after) - set(outside_before)) + sorted(
        p
        for p in set(outside_before) & set(outside_after)
        if outside_before[p] != outside_after[p] and not p.startswith("dataset")
    )
    # the runner's staging root holds only its runs' folders, each gone when its run
    # ends: anything else there is the plugin's (`Path(out_dir).parent.parent`), which
    # no run removes, though the whole folder is left out of the snapshots
    staging = out / STAGING_DIR
    if staging.is_dir():
        written += sorted(f"{STAGING_DIR}/{entry.name}" for entry in staging.iterdir())
    # absolute paths outside the sandbox, as a python plugin's own code opened them
    written += sorted(p for p in written_anywhere if not _inside(Path(p), sandbox))
    wrote = (
        f"wrote {', '.join(written[:5])} (write only under out_dir, which is kept, or "
        "work_dir, for scratch; a relative path lands in the folder the user started "
        "mdivicom in)"
    )
    problems = ([wrote] if written else []) + beside
    add(
        "writes only to out_dir",
        "fail" if problems else "pass",
        "; ".join(problems)
        if problems
        else (
            "nothing written outside out_dir in the sandbox, nor elsewhere by the plugin's "
            "Python code (a subprocess or C code writing elsewhere is not seen)"
            if spec.container is None
            else "nothing written outside out_dir"
        ),
    )
    if real.status != "succeeded":
        return
    provenance = Path(real.out_dir) / "provenance.json"
    if provenance.exists():
        try:
            ok = isinstance(json.loads(provenance.read_text(encoding="utf-8")), dict)
        except (ValueError, OSError):
            ok = False
        add(
            "provenance.json",
            "pass" if ok else "fail",
            "a JSON object" if ok else "provenance.json is not a JSON object",
        )
    else:
        add(
            "provenance.json",
            "warn",
            "not written (the contract recommends <out_dir>/provenance.json)",
        )
    bundles = [validate_file(Path(real.out_dir) / b.path) for b in real.resultbundles]
    for report in bundles:
        add(
            "resultbundle",
            "pass" if report.valid else "fail",
            f"{Path(report.path).relative_to(real.out_dir)}: "
            + ("valid" if report.valid else "; ".join(report.messages())),
        )
