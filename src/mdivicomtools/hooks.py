"""Loading hook modules and calling hooks one implementation at a time.

Two groups of entry points stay apart: `mdivicomtools.plugins` (analysis
plugins, see discovery.py) and `mdivicomtools.hooks` (pluggy modules, loaded
here). Each hook module is loaded, registered and checked in its own try, so a
module that fails to import or misspells a hook is listed as broken and every
other module still works. Hooks are called per implementation rather than
through pluggy's combined call, so one implementation that raises is reported
by name and costs nobody else their result.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from types import ModuleType
from typing import Any, Literal

import msgspec
import pluggy

from mdivicomtools import hookspecs
from mdivicomtools.contract import find_unsafe_json
from mdivicomtools.discovery import Distribution, distribution_of, one_line
from mdivicomtools.markers import PROJECT_NAME
from mdivicomtools.run_types import HookError

HOOK_GROUP = "mdivicomtools.hooks"
DISABLE_ENV = "MDIVICOM_DISABLE_HOOKS"
HOOK_NAMES = tuple(sorted(name for name in vars(hookspecs) if name.startswith("mdivicom_")))

#: the core's own behaviour, registered like any hook module (name -> module)
BUILTIN_MODULES = {
    "mdivicomtools.validation": "mdivicomtools.builtin_hooks.validation",
    "mdivicomtools.host": "mdivicomtools.builtin_hooks.host",
    "mdivicomtools.inventory": "mdivicomtools.builtin_hooks.inventory",
    "mdivicomtools.bundles": "mdivicomtools.builtin_hooks.bundles",
    "mdivicomtools.python": "mdivicomtools.builtin_hooks.python_backend",
}


class HookModule(msgspec.Struct, kw_only=True):
    """One hook module as `mdivicom hooks list` shows it."""

    name: str
    status: Literal["ok", "broken", "disabled"]
    hooks: list[str] = []
    error: str | None = None
    builtin: bool = False
    origin: str = ""
    distribution: Distribution | None = None

    def summary(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def disabled_names(value: str | None = None) -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "") if value is None else value
    return {name.strip() for name in raw.split(",") if name.strip()}


class HookManager:
    """A pluggy PluginManager plus the load report of every hook module."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.modules: list[HookModule] = []

    # -- loading --------------------------------------------------------------

    def add_module(self, module: object, name: str, **info: Any) -> HookModule:
        """Register one module and check its hooks; on failure leave it out, broken."""
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # PluginValidationError, or a duplicate name
            return self._report(name, "broken", error=one_line(str(exc)), **info)
        problem = self._unknown_hooks(module)
        if problem is not None:
            self.pm.unregister(module)
            return self._report(name, "broken", error=problem, **info)
        hooks = sorted(caller.name for caller in self.pm.get_hookcallers(module) or [])
        return self._report(name, "ok", hooks=hooks, **info)

    def _unknown_hooks(self, module: object) -> str | None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            pass
        else:
            return None
        import difflib  # only on the error path

        unknown = sorted(
            caller.name
            for caller in self.pm.get_hookcallers(module) or []
            if caller.name not in HOOK_NAMES
        )
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, HOOK_NAMES, n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        return "unknown hook " + ", ".join(hints) + "; known hooks: " + ", ".join(HOOK_NAMES)

    def _report(
        self, name: str, status: Literal["ok", "broken", "disabled"], **info: Any
    ) -> HookModule:
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
    ) -> None:
        skip = set(disabled)
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=HOOK_GROUP)
        for ep in entry_points:
            distribution = distribution_of(ep)
            info: dict[str, Any] = {
                "origin": f"entry point '{ep.name} = {ep.value}'",
                "distribution": distribution,
            }
            if ep.name in skip:
                self._report(ep.name, "disabled", error=f"disabled by {DISABLE_ENV}", **info)
                continue
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:
                message = one_line(f"{type(exc).__name__}: {exc}")
                self._report(ep.name, "broken", error=f"import failed: {message}", **info)
                continue
            self.add_module(module, ep.name, **info)

    # -- calling --------------------------------------------------------------

    def call_each(self, hook: str, **kwargs: Any) -> tuple[list[tuple[str, Any]], list[HookError]]:
        """Call every implementation of `hook` in pluggy's order, each in its own try."""
        caller = getattr(self.pm.hook, hook)
        results: list[tuple[str, Any]] = []
        errors: list[HookError] = []
        for impl in reversed(caller.get_hookimpls()):
            args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
            try:
                results.append((impl.plugin_name, impl.function(**args)))
            except Exception as exc:
                errors.append(
                    HookError(
                        hook=hook,
                        plugin=impl.plugin_name,
                        error=one_line(f"{type(exc).__name__}: {exc}"),
                    )
                )
        return results, errors

    def json_results(
        self, hook: str, **kwargs: Any
    ) -> tuple[dict[str, dict[str, Any]], list[HookError]]:
        """Dict results of a hook by module name; anything else is a HookError."""
        results, errors = self.call_each(hook, **kwargs)
        kept: dict[str, dict[str, Any]] = {}
        for name, value in results:
            if value is None:
                continue
            problem = (
                f"returned a {type(value).__name__}, not a dict"
                if not isinstance(value, dict)
                else find_unsafe_json(value)
            )
            if problem:
                errors.append(HookError(hook=hook, plugin=name, error=f"not kept: {problem}"))
            else:
                kept[name] = value
        return kept, errors


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
    disabled = disabled_names()
    manager.load_entry_points(disabled, entry_points)
    for name, module in extra:
        if name in disabled:
            manager._report(name, "disabled", error=f"disabled by {DISABLE_ENV}", origin="extra")
        else:
            manager.add_module(module, name, origin="extra")
    return manager
