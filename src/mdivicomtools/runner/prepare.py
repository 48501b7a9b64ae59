"""Everything a run of one plugin needs before it starts, decided once.

`prepare` resolves the plugin, builds its config, loads the hooks and the
backends; `Prepared.request` turns RunOptions into the frozen RunRequest for
one (dataset, out) target. A single run makes one request, a batch one per
session; both go through here, so they cannot disagree on what a run is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from mdivicomtools.common.home import expand_home
from mdivicomtools.common.text import a_type, describe_exception, named_options
from mdivicomtools.common.units import is_positive
from mdivicomtools.discovery import (
    ENTRY_POINT_GROUP,
    PluginRecord,
    resolve,
    scan_entry_points,
)
from mdivicomtools.errors import MdivicomError, UsageError, in_callers_words
from mdivicomtools.execution.base import ExecutionBackend
from mdivicomtools.execution.registry import BackendRegistry
from mdivicomtools.hooks.manager import CONTRACT_BROKEN, HOOK_GROUP, HookManager, load_hooks
from mdivicomtools.model.contract import PluginSpec
from mdivicomtools.model.layout import WORK_DIR, staging_root
from mdivicomtools.model.options import RunOptions
from mdivicomtools.model.run import PluginInfo, RunRequest
from mdivicomtools.records.store import new_run_id
from mdivicomtools.runner.config import build_config, config_sha256
from mdivicomtools.runner.containers import container_settings
from mdivicomtools.settings import (
    configured_hash_dataset,
    configured_strict_bundles,
    configured_strict_hooks,
)


class ValidationFailed(UsageError):
    """Pre-run checks found problems; all of them are listed, nothing was run."""

    def __init__(self, problems: list[str]) -> None:
        self._problems = problems
        super().__init__(
            "the run was not started:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )

    @property
    def problems(self) -> list[str]:
        """One line each, naming options in the caller's words as the message does."""
        return [in_callers_words(problem) for problem in self._problems]


def plugin_info(record: PluginRecord) -> PluginInfo:
    assert record.spec is not None
    meta = record.spec.meta
    return PluginInfo(
        id=meta.id,
        publisher=meta.effective_publisher,
        version=meta.version,
        kind=meta.kind,
        api_version=meta.api_version,
        source=record.source,
        distribution=record.distribution,
    )


def _pinned_spec(spec: PluginSpec | None, image: str | None) -> PluginSpec:
    """The plugin's spec, with the container image replaced by `image`.

    `rerun` pins the image a record names: an image id is exact where a tag
    may have moved, and is never pulled (a missing image is refused, not
    replaced by whatever a registry serves under that name now); a repo
    digest (`name@sha256:...`) names the same content and may be pulled.
    """
    assert spec is not None
    if image is None:
        return spec
    if spec.container is None:
        raise UsageError(f"an image was given ({image!r}) but the plugin is not a container plugin")
    pull = "missing" if "@sha256:" in image else "never"
    container = msgspec.structs.replace(spec.container, image=image, pull=pull)
    return msgspec.structs.replace(spec, container=container)


#: RunOptions fields that only a container plugin can use, with their option names
CONTAINER_OPTIONS = {
    "memory": "--memory",
    "cpus": "--cpus",
    "shm_size": "--shm-size",
    "gpus": "--gpus",
    "mounts": "--mount",
    "stop_grace": "--stop-grace",
}


def _check_container_options(options: RunOptions, plugin: PluginInfo) -> None:
    if plugin.kind == "container":
        return
    given = [
        f for field, f in CONTAINER_OPTIONS.items() if getattr(options, field) not in (None, ())
    ]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(
            f"{named_options(given)} only {verb} to container plugins; {plugin.ref} is a "
            f"{plugin.kind} plugin"
        )


def _problems(value: object, who: str) -> list[str]:
    """A backend's problem list as strings (one string is one problem, not letters)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(problem) for problem in value]
    return [f"{who} returned {a_type(value)}, not a list of problems (strings)"]


class Prepared:
    """One plugin, its config, the hooks and the chosen backend; close() when done."""

    def __init__(self, ref: str, options: RunOptions, hooks: HookManager | None) -> None:
        if options.timeout is not None and not is_positive(options.timeout):
            raise UsageError(
                f"--timeout must be a positive, finite number of seconds, got {options.timeout:g}"
            )
        # one entry-point scan serves both plugin resolution and hook loading
        scan = scan_entry_points(ENTRY_POINT_GROUP, HOOK_GROUP)
        self.found = resolve(ref, entry_points=scan[ENTRY_POINT_GROUP])
        self.plugin = plugin_info(self.found)
        _check_container_options(options, self.plugin)
        self.options = options
        self.config: dict[str, Any] = build_config(options.config, options.sets)
        self.config_sha256 = config_sha256(self.config)
        self.strict_bundles = (
            options.strict_bundles
            if options.strict_bundles is not None
            else configured_strict_bundles()
        )
        self.hash_dataset = (
            options.hash_dataset if options.hash_dataset is not None else configured_hash_dataset()
        )
        self.spec = _pinned_spec(self.found.spec, options.image)
        self.hooks = hooks or load_hooks(entry_points=scan[HOOK_GROUP])
        broken = self.hooks.broken
        strict_hooks = (
            options.strict_hooks if options.strict_hooks is not None else configured_strict_hooks()
        )
        if broken and strict_hooks:
            source = "--strict-hooks" if options.strict_hooks is not None else "strict_hooks = true"
            raise UsageError(
                f"broken hook module(s) with {source}: "
                + "; ".join(f"{m.name}: {m.error}" for m in broken)
                + " (fix or uninstall them, or set MDIVICOM_DISABLE_HOOKS)"
            )
        self.backends: BackendRegistry = self.hooks.get_backends()
        try:
            self.backend: ExecutionBackend = self.backends.choose(options.backend, self.plugin.kind)
        except BaseException:
            self.backends.close()
            raise

    def close(self) -> None:
        self.backends.close()

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, dataset: str | Path, out: str | Path, work: str | Path | None) -> RunRequest:
        assert self.found.spec is not None
        run_id = new_run_id()
        run_out_dir = expand_home(out).absolute()
        work_dir = (
            expand_home(work).absolute()
            if work is not None
            else staging_root(run_out_dir, run_id) / WORK_DIR
        )
        options = self.options
        # a timeout needs a process to stop, so it isolates a python plugin
        isolate = options.isolate or (options.timeout is not None and self.plugin.kind == "python")
        return RunRequest(
            run_id=run_id,
            plugin=self.plugin,
            spec=self.spec,
            dataset_dir=expand_home(dataset).absolute(),
            run_out_dir=run_out_dir,
            out_dir=run_out_dir / self.plugin.id,
            work_dir=work_dir,
            config=self.config,
            backend=self.backend.name,
            dry_run=options.dry_run,
            timeout=options.timeout,
            isolate=isolate,
            overwrite=options.overwrite,
            strict_bundles=self.strict_bundles,
            hash_dataset=self.hash_dataset,
            rerun_of=options.rerun_of,
            container=(
                container_settings(self.found.spec.container, options, run_out_dir)
                if self.found.spec.container is not None
                else None
            ),
            attempt=options.attempt,
            image_name=(
                (options.image_name or self.found.spec.container.image)
                if options.image is not None and self.found.spec.container is not None
                else None
            ),
        )

    def image_id(self) -> str | None:
        """The id of the image a container plugin would run now; None for python plugins,
        when the image is not there, or when the backend cannot say.

        A docker/podman-style backend is asked through its engine; any other backend
        through its optional `image_id(ref)` (docs/extending.md), so `--resume` can
        tell that a site backend's image changed under the same tag.
        """
        container = self.spec.container
        if container is None:
            return None
        engine = getattr(self.backend, "engine", None)
        if engine is not None:
            try:
                facts = engine().image(container.image)
            except MdivicomError:
                return None
            return facts.id if facts is not None else None
        ask = getattr(self.backend, "image_id", None)
        if not callable(ask):
            return None
        try:
            answer = ask(container.image)
        except Exception:  # a site's backend: an unknown image id, not a failed batch
            return None
        return answer if isinstance(answer, str) and answer else None

    def problems(self, request: RunRequest) -> list[str]:
        """Every validation hook's problems, else the backend's own pre-run checks."""
        return self.hook_problems(request) or self._preflight(request)

    def hook_problems(self, request: RunRequest) -> list[str]:
        """The validation hooks' problems with `request` (the backend's checks aside)."""
        try:
            called = self.hooks.call("mdivicom_validate_run", request=request)
        except KeyboardInterrupt as exc:
            # a hung check (a consent file on a network drive): say whose it was
            cut = self.hooks.cut_short("mdivicom_validate_run")
            if cut is not None and cut.running:
                exc.during = f"while validation hook {cut.running!r} ran"  # type: ignore[attr-defined]
            raise
        # a site module's problems name it, so the reader knows whose rule refused the
        # run (a lab, a site, a personal package), and what MDIVICOM_DISABLE_HOOKS takes
        builtin = {m.name for m in self.hooks.modules if m.builtin}
        owner = {id(value): module for module, value in called.results}
        problems = []
        # pluggy's value, as any wrapper=True implementation left it (a problem a
        # wrapper added is its own, and named by nobody)
        for found in called.returned:
            module = owner.get(id(found))
            named = module is not None and module not in builtin
            problems += [
                f"{p} (validation hook {module!r})" if named else str(p) for p in (found or [])
            ]
        problems += [
            _failed_validation(e.plugin, e.error, e.plugin in builtin) for e in called.errors
        ]
        return problems

    def pull_ahead(self, request: RunRequest) -> list[str]:
        """A batch's one pull of the plugin's image before its sessions (see ContainerBackend)."""
        pull = getattr(self.backend, "pull_ahead", None)
        if pull is None:
            return []
        try:
            return _problems(pull(request), self.backends.who(self.backend.name))
        except MdivicomError as exc:
            return [f"backend {self.backend.name!r}: {exc}"]
        except Exception as exc:  # a site's backend: its failure is a problem, not a crash
            return [
                f"{self.backends.who(self.backend.name)}: its pull_ahead() raised "
                f"{describe_exception(exc)}"
            ]

    def _preflight(self, request: RunRequest) -> list[str]:
        """The backend's own pre-run checks (a container image present, its pin matching)."""
        preflight = getattr(self.backend, "preflight", None)
        if preflight is None:
            return []
        try:
            return _problems(preflight(request), self.backends.who(self.backend.name))
        except MdivicomError as exc:
            return [f"backend {self.backend.name!r}: {exc}"]
        except Exception as exc:  # a site's backend: its failure is a problem, not a crash
            return [
                f"{self.backends.who(self.backend.name)}: its preflight() raised "
                f"{describe_exception(exc)}; fix or disable (MDIVICOM_DISABLE_HOOKS) that module"
            ]


def _failed_validation(module: str, error: str, builtin: bool) -> str:
    """The problem a validation hook's own failure becomes.

    The run is refused for a fault in the site's code, not in the run: the
    reader needs the way past it (a module that raises on a network outage
    refused every run, and the message named no way to go on). A return value
    against the contract is said as what it returned, not as an exception the
    module never raised.
    """
    broke = error.removeprefix(f"{CONTRACT_BROKEN}: ")
    what = broke if broke != error else f"raised {error}"
    if builtin:
        return f"validation hook {module!r} {what}"
    return (
        f"validation hook {module!r} {what}; fix that module, or skip it for a run with "
        f"MDIVICOM_DISABLE_HOOKS={module}"
    )
