"""Every backend the hook modules provide, by name, and the choice of one for a run.

The hook manager builds a BackendRegistry from the `mdivicom_execution_backends`
results (see `HookManager.get_backends`). Two modules providing the same name
are a conflict naming both, never a silent first-wins; a module whose hook
raised is remembered, so "backend unavailable" can say why a backend is
missing.
"""

from __future__ import annotations

import contextlib
import os

import msgspec

from mdivicomtools.common.install import install_hint
from mdivicomtools.common.text import a_type, close_matches, describe_exception
from mdivicomtools.execution.base import Availability, BackendUnavailable, ExecutionBackend
from mdivicomtools.execution.container.engine import GpuSupport
from mdivicomtools.model.run import HookError
from mdivicomtools.settings import BACKEND_ENV, config_file, configured_backend

#: container backends tried in this order by `--backend auto`
CONTAINER_PREFERENCE = ("docker", "podman")
_CONFLICT_FIX = (
    "disable all but one with MDIVICOM_DISABLE_HOOKS=<module> "
    "(built-in modules cannot be disabled: rename the other module's backend)"
)


class BackendItem(msgspec.Struct, kw_only=True):
    """One line of `mdivicom backends list`."""

    name: str
    kinds: list[str]
    available: bool
    engine: str | None
    version: str | None
    reason: str | None
    fix: str | None
    provided_by: list[str]
    conflict: bool = False
    #: whether a container engine can serve GPU requests; null for other backends
    gpus: GpuSupport | None = None


class BackendRegistry:
    """The backends of one hook manager; close it when the run is over."""

    def __init__(
        self,
        provided: list[tuple[str, ExecutionBackend]],
        errors: list[HookError] | None = None,
        disabled: list[tuple[str, str]] | None = None,
        unloaded: list[tuple[str, str]] | None = None,
    ) -> None:
        self.providers: dict[str, list[str]] = {}
        self.backends: dict[str, ExecutionBackend] = {}
        self.errors: list[HookError] = list(errors or [])
        #: (module, "disabled by ...") of the hook modules switched off: never
        #: imported, so which backends they would provide is unknown
        self.disabled: list[tuple[str, str]] = list(dict.fromkeys(disabled or []))
        #: (module, why) of the installed hook modules left out as broken (an import
        #: that failed, a misspelt hook): which backends they would provide is unknown too
        self.unloaded: list[tuple[str, str]] = list(unloaded or [])
        #: what the choice of a backend should tell the user (see choose())
        self.notes: list[str] = []
        for module, backend in provided:
            self.providers.setdefault(backend.name, []).append(module)
            self.backends.setdefault(backend.name, backend)
        self._all = [backend for _, backend in provided]
        self._status: dict[str, Availability] = {}

    # -- looking things up ----------------------------------------------------

    @property
    def conflicts(self) -> dict[str, list[str]]:
        """Backend names that more than one module provides, with every provider."""
        return {name: mods for name, mods in self.providers.items() if len(mods) > 1}

    def who(self, name: str) -> str:
        """`the NAME backend (hook module 'M')`: what a message about a backend's own
        mistake names, so the reader knows which installed package to fix."""
        modules = ", ".join(repr(module) for module in self.providers.get(name, []))
        return f"the {name} backend" + (f" (hook module {modules})" if modules else "")

    def availability(self, name: str) -> Availability:
        """Asked once per backend: it may connect to an engine or start a service."""
        if name not in self._status:
            try:
                status = self.backends[name].availability()
            except Exception as exc:  # a site's backend must not break every run
                status = Availability(
                    available=False,
                    reason=f"its availability() raised {describe_exception(exc)}",
                    fix="fix or disable (MDIVICOM_DISABLE_HOOKS) the hook module "
                    + ", ".join(self.providers.get(name, ["?"])),
                )
            if not isinstance(status, Availability):
                status = Availability(
                    available=False,
                    reason=f"its availability() returned {a_type(status)}, "
                    "not an Availability (mdivicomtools.execution.base)",
                    fix="fix or disable (MDIVICOM_DISABLE_HOOKS) the hook module "
                    + ", ".join(self.providers.get(name, ["?"])),
                )
            if not status.available and not status.reason:
                # printed as "None" in `backends list` and in every refusal
                status = msgspec.structs.replace(
                    status,
                    reason="its availability() said unavailable without a reason",
                    fix=status.fix
                    or "the hook module "
                    + ", ".join(self.providers.get(name, ["?"]))
                    + " should say why in Availability.reason",
                )
            self._status[name] = status
        return self._status[name]

    def _usable(self, name: str, kind: str | None) -> bool:
        """Runs `kind` (any kind when None), has one provider and answers."""
        backend = self.backends.get(name)
        return (
            backend is not None
            and name not in self.conflicts
            and (kind is None or kind in backend.kinds)
            and self.availability(name).available
        )

    def get_backend(self, name: str, kind: str, source: str = "--backend") -> ExecutionBackend:
        """The backend `name` for a plugin of `kind`, or BackendUnavailable saying why
        and listing the valid choices."""
        where = "" if source == "--backend" else f" (from {source})"
        backend = self.backends.get(name)
        if backend is None:
            # a typo is the likeliest cause: its "did you mean" comes first, also when
            # disabled modules are named (a site disabling one module for good lost it)
            close = (
                []
                if name in CONTAINER_PREFERENCE
                else close_matches(str(name).lower(), sorted(self.backends))
            )
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if self.disabled:
                hint += self._disabled_modules("it")
            elif name in CONTAINER_PREFERENCE:
                hint = f"; install it with: {install_hint(name)}"
            raise BackendUnavailable(
                f"backend {name!r}{where} is not installed; installed backends: "
                f"{', '.join(sorted(self.backends)) or 'none'}{hint}"
                f"{self._unloaded_modules('it')}{self._hook_failures()}"
            )
        if name in self.conflicts:
            raise BackendUnavailable(
                f"backend {name!r}{where} is provided by several hook modules "
                f"({', '.join(self.conflicts[name])}); {_CONFLICT_FIX}"
            )
        if kind not in backend.kinds:
            raise BackendUnavailable(
                f"backend {name!r} cannot run {kind} plugins; "
                f"it runs: {', '.join(sorted(backend.kinds))}; backends that run {kind} "
                f"plugins: {', '.join(self._able(kind)) or 'none'}"
            )
        status = self.availability(name)
        if not status.available:
            raise BackendUnavailable(
                f"backend {name!r}{where} is not available: {status.reason}"
                + (f"; {status.fix}" if status.fix else "")
                + f"; available backends: {self._available_names()}"
            )
        return backend

    def choose(self, requested: str | None, kind: str) -> ExecutionBackend:
        """Resolve `--backend` for a plugin kind.

        An explicit name must work or it is an error (exit 2) that lists what is
        available. Without --backend, MDIVICOM_BACKEND is the default and just as
        strict (an operator who set podman because Docker is not allowed must
        never silently get Docker), except for plugin kinds it cannot run: python
        plugins still run on python. `auto` tries MDIVICOM_BACKEND, the user
        config file's `backend`, then python for python plugins or docker, podman
        for container plugins, then any other installed backend, and takes the
        first that runs this kind and answers. The user config's choice is a
        preference, not a rule: when `auto` passes it over, `notes` says why and
        which backend runs instead.
        """
        if requested is None:
            env_choice = os.environ.get(BACKEND_ENV)
            if env_choice and env_choice != "auto":
                chosen = self.backends.get(env_choice)
                if chosen is None or kind in chosen.kinds:
                    return self.get_backend(env_choice, kind, source=BACKEND_ENV)
            requested = "auto"
        if requested != "auto":
            return self.get_backend(requested, kind)
        preferred = _preferences(kind)
        candidates = preferred + sorted(self.backends)
        for candidate in dict.fromkeys(candidates):
            if self._usable(candidate, kind):
                self._note_passed_over_preference(candidate, kind)
                self._note_passed_over_conflicts(preferred, candidate, kind)
                return self.backends[candidate]
        raise BackendUnavailable(self._none_available(kind))

    def _note_passed_over_conflicts(self, preferred: list[str], chosen: str, kind: str) -> None:
        """Say so when `auto` passed over a backend it prefers (python for python
        plugins, say) because two modules provide that name: a site module that also
        calls its backend `python` must not silently send every python plugin to
        whichever other backend sorts first."""
        for name in dict.fromkeys(preferred):
            if name == chosen:
                return
            backend = self.backends.get(name)
            if name in self.conflicts and backend is not None and kind in backend.kinds:
                self.notes.append(
                    f"backend {name!r} is provided by several hook modules "
                    f"({', '.join(self.conflicts[name])}) and was passed over; running on "
                    f"{chosen} instead; {_CONFLICT_FIX}"
                )

    def _note_passed_over_preference(self, chosen: str, kind: str) -> None:
        """Say so when `auto` did not take the user config's `backend`: a misspelt name
        or an engine that is down must not silently mean another engine, and a site
        backend that runs python plugins must not seem to run them."""
        preferred = configured_backend()
        if not preferred or preferred in ("auto", chosen):
            return
        if os.environ.get(BACKEND_ENV, "auto") != "auto":
            return  # MDIVICOM_BACKEND was tried first and ran: the file was not asked
        where = f"backend = {preferred!r} in the user config {str(config_file())!r}"
        backend = self.backends.get(preferred)
        if kind == "python":
            # the file's choice is for container plugins; python plugins run on python
            if backend is not None and "python" in backend.kinds:
                self.notes.append(
                    f"{where} chooses among container backends only; python plugins run "
                    f"on {chosen} (set MDIVICOM_BACKEND={preferred} to run them on "
                    f"{preferred})"
                )
            return
        if backend is None:
            close = close_matches(preferred, list(self.backends))
            why = "is not an installed backend" + (
                f" (did you mean {close[0]!r}?)" if close else ""
            )
        elif kind not in backend.kinds:
            return
        else:
            status = self.availability(preferred)
            why = f"is not available ({status.reason or 'provided by several hook modules'})"
        self.notes.append(
            f"{where} {why}; running on {chosen} instead (set MDIVICOM_BACKEND={preferred} "
            "to refuse rather than fall back)"
        )

    # -- listing and closing --------------------------------------------------

    def items(self) -> list[BackendItem]:
        items = []
        for name, backend in sorted(self.backends.items()):
            status = self.availability(name)
            conflict = name in self.conflicts
            reason = status.reason
            if conflict:
                reason = "provided by several hook modules: " + ", ".join(self.providers[name])
            items.append(
                BackendItem(
                    name=name,
                    kinds=sorted(backend.kinds),
                    available=status.available and not conflict,
                    engine=status.engine,
                    version=status.version,
                    reason=reason,
                    fix=_CONFLICT_FIX if conflict else status.fix,
                    provided_by=self.providers[name],
                    conflict=conflict,
                    gpus=_gpu_support(backend) if status.available and not conflict else None,
                )
            )
        return items

    def close(self) -> None:
        """Let every backend release what it holds (a connection, a private service)."""
        for backend in self._all:
            close = getattr(backend, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def __enter__(self) -> BackendRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- messages ---------------------------------------------------------------

    def _able(self, kind: str) -> list[str]:
        return [n for n, b in sorted(self.backends.items()) if kind in b.kinds]

    def _available_names(self) -> str:
        names = [n for n in sorted(self.backends) if self._usable(n, None)]
        return ", ".join(names) or "none"

    def _disabled_modules(self, what: str) -> str:
        """Name the switched-off hook modules: the backend asked for may be one of
        theirs, installed but not loaded, and telling the user to pip install it
        sent them the wrong way."""
        modules = ", ".join(f"{module!r} ({why})" for module, why in self.disabled)
        return f"; disabled hook modules, not loaded, may provide {what}: {modules}"

    def _unloaded_modules(self, what: str) -> str:
        """Name the broken hook modules: a site's backend module whose `import pyslurm`
        failed (or that misspelt its hook) left `--backend slurm` saying only that the
        backend is not installed (and, for docker, to pip install what is there)."""
        if not self.unloaded:
            return ""
        modules = "; ".join(f"{module!r} ({why})" for module, why in self.unloaded)
        return f"; broken hook modules, left out, may provide {what}: {modules}"

    def _hook_failures(self) -> str:
        if not self.errors:
            return ""
        failed = "; ".join(f"{e.plugin}: {e.error}" for e in self.errors)
        return f"; hook modules that failed to provide backends: {failed}"

    def _none_available(self, kind: str) -> str:
        able = self._able(kind)
        if not able:
            if self.disabled:
                return (
                    f"no installed backend runs {kind} plugins"
                    + self._disabled_modules("one")
                    + self._unloaded_modules("one")
                    + self._hook_failures()
                )
            return (
                f"no installed backend runs {kind} plugins; install one with: "
                f"{install_hint('docker')} (or {install_hint('podman')})"
                + self._unloaded_modules("one")
                + self._hook_failures()
            )
        reasons = "; ".join(
            f"{n}: provided by several hook modules"
            if n in self.conflicts
            else f"{n}: {self.availability(n).reason}"
            for n in able
        )
        return (
            f"no backend that runs {kind} plugins is available ({reasons}); "
            "see `mdivicom backends list` for how to fix each"
        )


def _preferences(kind: str) -> list[str]:
    """Backend names in the order `auto` tries them first.

    Python plugins run on python (or MDIVICOM_BACKEND when that backend runs
    python plugins); only container plugins consult the user config file.
    """
    preferences = [os.environ.get(BACKEND_ENV, "")]
    if kind == "python":
        preferences.append("python")
    else:
        preferences.append(configured_backend() or "")
        preferences.extend(CONTAINER_PREFERENCE)
    return [name for name in preferences if name and name != "auto"]


def _gpu_support(backend: ExecutionBackend) -> GpuSupport | None:
    """A container backend's answer on GPUs (asked only for `backends list`: it costs
    an engine request that a run without GPUs does not need)."""
    ask = getattr(backend, "gpu_support", None)
    if ask is None:
        return None
    try:
        answer = ask()
    except Exception:  # a third-party backend's failure must not break the listing
        return None
    return answer if isinstance(answer, GpuSupport) else None
