"""Loading hook modules and calling hooks through pluggy, one failure at a time.

Two groups of entry points stay apart: `mdivicomtools.plugins` (analysis
plugins, see `discovery`) and `mdivicomtools.hooks` (pluggy modules, loaded
here). Each hook module is loaded, registered and checked in its own try, so a
module that fails to import or misspells a hook is listed as broken and every
other module still works.

Hooks are called through pluggy's own machinery, so `tryfirst`, `trylast` and
`@hookimpl(wrapper=True)` behave as pluggy documents. What pluggy does not do
is isolate failures: one raising implementation would abort the whole call and
cost the run its record. So at registration each implementation is wrapped in
a guard that reports an exception as a HookError naming the module and lets
the call go on; a wrapper's guard does the same around its own code.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
from collections.abc import Callable, Generator, Iterable, Iterator
from types import ModuleType
from typing import Any, Literal, cast

import msgspec
import pluggy

from mdivicomtools.common.entrypoints import Distribution, distribution_of
from mdivicomtools.common.jsonio import find_unsafe_json
from mdivicomtools.common.streams import stdout_to_stderr
from mdivicomtools.common.text import a_type, close_matches, describe_exception, one_line
from mdivicomtools.common.workdir import kept_working_folder
from mdivicomtools.execution.base import ExecutionBackend, shape_problem
from mdivicomtools.execution.registry import BackendRegistry
from mdivicomtools.hooks import contracts, specs
from mdivicomtools.hooks.markers import PROJECT_NAME
from mdivicomtools.model.run import HookError
from mdivicomtools.settings import configured_disable_hooks

HOOK_GROUP = "mdivicomtools.hooks"
HOOK_NAMES = tuple(sorted(name for name in vars(specs) if name.startswith("mdivicom_")))

#: the core's own behaviour, registered like any hook module (name -> module)
BUILTIN_MODULES = {
    "mdivicomtools.validation": "mdivicomtools.hooks.builtin.validation",
    "mdivicomtools.host": "mdivicomtools.hooks.builtin.host",
    "mdivicomtools.inventory": "mdivicomtools.hooks.builtin.inventory",
    "mdivicomtools.bundles": "mdivicomtools.hooks.builtin.bundles",
    "mdivicomtools.python": "mdivicomtools.hooks.builtin.python_backend",
}

Status = Literal["ok", "broken", "disabled"]


class HookModule(msgspec.Struct, kw_only=True):
    """One hook module as `mdivicom hooks list` shows it."""

    name: str
    status: Status
    hooks: list[str] = []
    error: str | None = None
    builtin: bool = False
    origin: str = ""
    distribution: Distribution | None = None


class HookResults(msgspec.Struct, kw_only=True):
    """What one hook call gave: each implementation's value by module, and failures.

    `returned` is what pluggy's call returned: the list of the implementations'
    values as `wrapper=True` implementations left it. Hooks whose values are
    merged (validation problems) use it, so a wrapper can add or drop some;
    hooks whose values are kept by module (provenance, backends) use `results`.
    """

    results: list[tuple[str, Any]] = []
    errors: list[HookError] = []
    returned: list[Any] = []
    #: the module whose implementation is running (the one a Ctrl-C cut short)
    running: str | None = None


#: the call being made, so the guards know where to report
_CURRENT: contextvars.ContextVar[HookResults | None] = contextvars.ContextVar(
    "mdivicom_hook_call", default=None
)


#: what looks on while each implementation of the call being made runs (`call`'s `watch`)
_WATCH: contextvars.ContextVar[
    Callable[[str], contextlib.AbstractContextManager[object]] | None
] = contextvars.ContextVar("mdivicom_hook_watch", default=None)


def _watched(module: str) -> contextlib.AbstractContextManager[object]:
    watch = _WATCH.get()
    return watch(module) if watch is not None else contextlib.nullcontext()


def _report_error(hook: str, module: str, exc: BaseException) -> None:
    current = _CURRENT.get()
    if current is None:  # called through pm.hook directly: behave as plain pluggy
        raise exc
    current.errors.append(HookError(hook=hook, plugin=module, error=describe_exception(exc)))


def _guard(
    hook: str, module: str, function: Callable[..., Any], argnames: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """Call one implementation: what it raises (SystemExit too; only an interrupt
    goes on), returns against its hook's contract, or changes of the request and
    outcome it may not change is reported as its failure and left out or undone."""
    check = contracts.RESULT_CHECKS.get(hook)
    settle = contracts.SETTLE.get(hook)

    def guarded(*args: Any) -> Any:
        before = contracts.snapshot(hook, argnames, args)
        current = _running(module)
        try:
            with _watched(module):
                value = function(*args)
            if settle is not None:
                value = settle(value)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            _report_error(hook, module, exc)
            value = None
        else:
            problem = check(value) if check is not None else None
            if problem is not None:
                _report_error(hook, module, ContractBroken(problem))
                value = None
        for problem in before.restore() if before is not None else []:
            _report_error(hook, module, ContractBroken(problem))
        if current is not None:
            current.running = None
            if value is not None:
                current.results.append((module, value))
        return value

    return guarded


def _running(module: str) -> HookResults | None:
    """Note `module` as the one running in the call being made (so an interrupt can
    name it); the call's results, if a call is being made."""
    current = _CURRENT.get()
    if current is not None:
        current.running = module
    return current


class ContractBroken(Exception):
    """An implementation returned or changed what its hook does not allow."""


#: how a ContractBroken starts in a HookError's `error` (`ContractBroken: returned ...`)
CONTRACT_BROKEN = ContractBroken.__name__


def _guard_wrapper(
    hook: str, module: str, function: Callable[..., Generator[None, Any, Any]]
) -> Callable[..., Generator[None, Any, Any]]:
    """A new-style wrapper whose own code may raise without aborting the call.

    If the code before its `yield` raises, the wrapper is skipped; if the code
    after it raises, the result of the inner implementations stands.
    """

    check = contracts.WRAPPER_CHECKS.get(hook)

    def guarded(*args: Any) -> Generator[None, Any, Any]:
        _running(module)
        try:
            inner = function(*args)
            with _watched(module):
                next(inner)
        except StopIteration:
            _report_error(hook, module, RuntimeError("the wrapper did not yield"))
            return (yield)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            _report_error(hook, module, exc)
            return (yield)
        try:
            result = yield
        except BaseException as exc:  # an interrupt: let the wrapper clean up
            try:
                inner.throw(exc)
            except StopIteration as stop:
                return stop.value
            raise
        _running(module)
        try:
            with _watched(module):
                inner.send(result)
        except StopIteration as stop:
            problem = check(stop.value) if check is not None else None
            if problem is None:
                return stop.value
            _report_error(hook, module, ContractBroken(problem))
            return result
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            _report_error(hook, module, exc)
            return result
        inner.close()
        _report_error(hook, module, RuntimeError("the wrapper yielded more than once"))
        return result

    return guarded


@contextlib.contextmanager
def _foreign_code() -> Iterator[None]:
    """While a hook module loads or its hooks run: what it prints goes to stderr,
    and a working folder it changes is put back.

    `--json` promises one JSON document on stdout; a site module's debugging
    print must not break every script that parses it. A `os.chdir` at import
    moved the folder the user's relative paths are resolved in. Discovery does
    the same for a plugin's get_plugin().
    """
    with stdout_to_stderr(), kept_working_folder():
        yield


def disabled_names(value: str | None = None) -> set[str]:
    """The names of `value` (comma-separated), or those MDIVICOM_DISABLE_HOOKS or the
    user config's `disable_hooks` give."""
    if value is None:
        return set(configured_disable_hooks()[0])
    return {name.strip() for name in value.split(",") if name.strip()}


class HookManager:
    """A pluggy PluginManager plus the load report of every hook module."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(specs)
        self.modules: list[HookModule] = []
        #: what the commands show on stderr: MDIVICOM_DISABLE_HOOKS names that did nothing
        self.warnings: list[str] = []
        #: the hook whose call Ctrl-C or SIGTERM cut short, with what it had gathered
        self.interrupted: tuple[str, HookResults] | None = None
        #: hooks called without the installed (site) modules (see without_site_hooks)
        self.builtin_only: frozenset[str] = frozenset()

    # -- loading --------------------------------------------------------------

    def add_module(self, module: object, name: str, **info: Any) -> HookModule:
        """Register one module and check its hooks; on failure leave it out, broken."""
        taken = next((m for m in self.modules if m.name == name and m.status == "ok"), None)
        if taken is not None:
            # pluggy's own message dumps its whole registry
            where = f" ({taken.origin})" if taken.origin else ""
            return self._report(
                name,
                "broken",
                error=f"another hook module is already registered as {name!r}{where}; "
                "hook module names (entry point names) must be unique: rename one",
                **info,
            )
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # PluginValidationError, or a duplicate name
            return self._report(name, "broken", error=one_line(str(exc)), **info)
        problem = self._unknown_hooks(module) or self._guard_all(module, name)
        if problem is not None:
            self.pm.unregister(module)
            return self._report(name, "broken", error=problem, **info)
        hooks = sorted(caller.name for caller in self.pm.get_hookcallers(module) or [])
        return self._report(name, "ok", hooks=hooks, **info)

    def _guard_all(self, module: object, name: str) -> str | None:
        """Wrap each implementation of `module` in its failure guard."""
        for caller in self.pm.get_hookcallers(module) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not module:
                    continue
                if impl.hookwrapper:
                    return (
                        f"{caller.name} uses an old-style hookwrapper=True, which mdivicomtools "
                        "does not support; use @hookimpl(wrapper=True)"
                    )
                guarded: Callable[..., object]
                if impl.wrapper:
                    # pluggy refused a wrapper=True implementation that is not a generator
                    # function when it was registered (its hook has a spec: see _unknown_hooks)
                    wrapper = cast("Callable[..., Generator[None, Any, Any]]", impl.function)
                    guarded = _guard_wrapper(caller.name, name, wrapper)
                else:
                    guarded = _guard(caller.name, name, impl.function, tuple(impl.argnames))
                # HookImpl.function is what pluggy calls; the module itself is untouched.
                # pluggy declares it Final, as nothing of its own replaces it
                impl.function = guarded  # type: ignore[misc]
        return None

    def _unknown_hooks(self, module: object) -> str | None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            pass
        else:
            return None
        unknown = sorted(
            caller.name
            for caller in self.pm.get_hookcallers(module) or []
            if caller.name not in HOOK_NAMES
        )
        hints = []
        for name in unknown:
            close = close_matches(name, HOOK_NAMES)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        return "unknown hook " + ", ".join(hints) + "; known hooks: " + ", ".join(HOOK_NAMES)

    def _report(self, name: str, status: Status, **info: Any) -> HookModule:
        record = HookModule(name=name, status=status, **info)
        self.modules.append(record)
        return record

    def load_builtins(self) -> None:
        for name, module_name in BUILTIN_MODULES.items():
            module = importlib.import_module(module_name)
            self.add_module(module, name, builtin=True, origin=module_name)

    def load_entry_points(
        self,
        disabled: Iterable[str] = (),
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        by: str = "MDIVICOM_DISABLE_HOOKS",
    ) -> None:
        skip = set(disabled)
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=HOOK_GROUP)
        for ep in entry_points:
            info: dict[str, Any] = {
                "origin": f"entry point '{ep.name} = {ep.value}'",
                "distribution": distribution_of(ep),
            }
            if ep.name in skip:
                self._report(ep.name, "disabled", error=f"disabled by {by}", **info)
                continue
            try:
                with _foreign_code():
                    module = ep.load()
            except (Exception, SystemExit) as exc:
                # the other reasons a module is broken carry their fix ("did you mean",
                # "rename one"); an import failure named none, and stayed in every run
                message = describe_exception(exc)
                fix = (
                    "install what it imports or fix it, or leave it out with "
                    f"MDIVICOM_DISABLE_HOOKS={ep.name}"
                )
                self._report(ep.name, "broken", error=f"import failed: {message}; {fix}", **info)
                continue
            self.add_module(module, ep.name, **info)

    def check_disabled(self, disabled: Iterable[str], by: str = "MDIVICOM_DISABLE_HOOKS") -> None:
        """Warn about MDIVICOM_DISABLE_HOOKS names that disabled nothing.

        An operator who disables a misbehaving site module with a misspelt name,
        or names a built-in one, would otherwise go on running with it and
        believe it off.
        """
        installed = [m.name for m in self.modules if not m.builtin]
        for name in sorted(set(disabled) - {m.name for m in self.modules if not m.builtin}):
            if name in BUILTIN_MODULES:
                self.warnings.append(
                    f"{by} names {name!r}, a built-in hook module, which cannot be "
                    "disabled; it is still used"
                )
                continue
            close = close_matches(name, installed)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.warnings.append(
                f"{by} names {name!r}, but no installed hook module has that "
                f"name{hint}; installed: {', '.join(installed) or 'none'}"
            )

    @property
    def broken(self) -> list[HookModule]:
        return [module for module in self.modules if module.status == "broken"]

    # -- calling --------------------------------------------------------------

    def call(
        self,
        hook: str,
        *,
        watch: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
        **kwargs: Any,
    ) -> HookResults:
        """Call `hook` through pluggy; every implementation's failure is reported, not raised.

        `watch(module)`, if given, is entered around each implementation (and each
        part of a wrapper around its `yield`), so the caller can tell what that
        module did (the runner's look at the output around each finalisation hook).
        """
        collected = HookResults()
        token = _CURRENT.set(collected)
        watching = _WATCH.set(watch)
        caller = getattr(self.pm.hook, hook)
        if hook in self.builtin_only:
            site = [self.pm.get_plugin(m.name) for m in self._site_modules(hook)]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=site)
        try:
            with _foreign_code():
                collected.returned = list(caller(**kwargs) or [])
        except KeyboardInterrupt:
            # what the implementations that returned gave, and which one was cut short
            self.interrupted = (hook, collected)
            raise
        finally:
            _WATCH.reset(watching)
            _CURRENT.reset(token)
        return collected

    def cut_short(self, hook: str) -> HookResults | None:
        """What the last call of `hook` had gathered when an interrupt stopped it, if
        it was stopped (`running` names the module that was running), else None."""
        if self.interrupted is None or self.interrupted[0] != hook:
            return None
        return self.interrupted[1]

    def count(self, hook: str) -> int:
        """How many modules implement `hook` (for progress messages)."""
        left_out = len(self._site_modules(hook)) if hook in self.builtin_only else 0
        implementing = (m for m in self.modules if m.status == "ok" and hook in m.hooks)
        return sum(1 for _ in implementing) - left_out

    def _site_modules(self, hook: str) -> list[HookModule]:
        return [m for m in self.modules if m.status == "ok" and not m.builtin and hook in m.hooks]

    def without_site_hooks(self, hooks: Iterable[str]) -> list[str]:
        """Call `hooks` with the built-in modules only; the names of the installed
        modules this leaves out.

        `plugins check` checks a plugin, not the site: a site's consent rule
        failed every plugin's check on a sample dataset, and its archive hook
        copied the sandbox's output into the lab's archive (and failed `writes
        only to out_dir`). Backends still come from every module.
        """
        self.builtin_only = frozenset(hooks)
        return sorted({m.name for hook in self.builtin_only for m in self._site_modules(hook)})

    def json_results(self, hook: str, **kwargs: Any) -> HookResults:
        """Dict results of a hook by module name; anything else is a HookError."""
        return self.keep_json(hook, self.call(hook, **kwargs))

    def keep_json(self, hook: str, called: HookResults) -> HookResults:
        """The dict results of `called`; anything else becomes a HookError."""
        kept = HookResults(errors=list(called.errors), running=called.running)
        for name, value in called.results:
            if value is None:
                continue
            problem = (
                f"returned {a_type(value)}, not a dict"
                if not isinstance(value, dict)
                else _with_fix(find_unsafe_json(value))
            )
            if problem:
                kept.errors.append(
                    HookError(
                        hook=hook, plugin=name, error=f"{CONTRACT_BROKEN}: not kept: {problem}"
                    )
                )
            else:
                kept.results.append((name, value))
        return kept

    def get_backends(self) -> BackendRegistry:
        """Every backend the modules provide; duplicates and failures are kept, not hidden."""
        called = self.call("mdivicom_execution_backends")
        provided: list[tuple[str, ExecutionBackend]] = []
        errors = list(called.errors)
        for module, backends in called.results:
            names: set[str] = set()
            for backend in backends or ():
                problem = shape_problem(backend)
                if problem is None and backend.name in names:
                    # not a conflict between modules: one module's own slip
                    problem = f"a second backend named {backend.name!r}; each name once"
                if problem is None:
                    names.add(backend.name)
                    provided.append((module, backend))
                    continue
                errors.append(
                    HookError(
                        hook="mdivicom_execution_backends",
                        plugin=module,
                        error=f"returned {problem}",
                    )
                )
        disabled = [(m.name, m.error or "disabled") for m in self.modules if m.status == "disabled"]
        unloaded = [(m.name, m.error or "broken") for m in self.broken if not m.builtin]
        return BackendRegistry(provided, errors, disabled, unloaded)


def _with_fix(problem: str | None) -> str | None:
    """`problem` with how to mend it: a site engineer returning a datetime or a Path,
    which `json.dumps` refuses too, was told only that it is not a JSON value."""
    if problem is None or not problem.endswith("not a JSON value"):
        return problem
    return (
        f"{problem}; return JSON values only (str, int, float, bool, None, lists, and "
        "dicts with str keys): convert the others first, e.g. str(path), when.isoformat()"
    )


def load_hooks(
    *,
    extra: Iterable[tuple[str, ModuleType | object]] = (),
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> HookManager:
    """The hook manager for a run: built-ins, installed hook modules, then `extra`.

    `extra` registers in-process modules (name, module) after the installed ones;
    tests and embedding applications use it instead of an entry point.
    `entry_points` may pass the group's entry points from an earlier scan.
    """
    manager = HookManager()
    manager.load_builtins()
    names, by = configured_disable_hooks()
    disabled = set(names)
    manager.load_entry_points(disabled, entry_points, by)
    for name, module in extra:
        if name in disabled:
            manager._report(name, "disabled", error=f"disabled by {by}", origin="extra")
        else:
            manager.add_module(module, name, origin="extra")
    manager.check_disabled(disabled, by)
    return manager
