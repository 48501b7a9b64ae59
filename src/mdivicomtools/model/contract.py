"""The plugin contract v0.1 as typed msgspec Structs, and its validation.

A plugin hands us a plain dict (from `get_plugin()` or a manifest file). This
module is the one place that turns such a dict into typed values, or into a
one-line reason naming the offending field, so discovery, `plugins info` and the
runner all agree on what a valid plugin is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from mdivicomtools.common.jsonio import find_unsafe_json
from mdivicomtools.common.text import a_type, close_matches, schema_problem
from mdivicomtools.model.container import (
    MountDecl,
    Resources,
    check_argv,
    check_capabilities,
    check_env,
    check_mount_targets,
    check_resources,
    placeholder_slips,
)
from mdivicomtools.model.imageref import reference_problem, short_name_notes

API_VERSION = "mdivicomtools.plugin.v0.1"
#: api_version majors this release understands; a plugin written for another
#: major may rely on behaviour we do not have, so it is listed as broken.
SUPPORTED_API_MAJORS = frozenset({0})
DEFAULT_PUBLISHER = "local"

# \Z, not $: `$` also matches before a final newline, which let "nl\n" pass
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
_API_RE = re.compile(r"^mdivicomtools\.plugin\.v(\d+)(?:\.(\d+))?\Z")
_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*\Z")

Kind = Literal["python", "container"]
PullPolicy = Literal["missing", "always", "never"]


class InvalidPlugin(ValueError):
    """A plugin dict that breaks the contract; the message names the field."""


class PluginMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`meta` of a plugin: what lists, refs and run records are made of.

    The optional fields are the ones published plugins already use. Fields this
    release does not know are kept in `extra` (and given back in `plugins info`),
    because newer plugins must not break older runners.
    """

    api_version: str
    id: str
    kind: Kind
    version: str
    description: str
    publisher: str | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    outputs: list[Any] | dict[str, Any] | None = None
    config_schema: dict[str, Any] | None = None
    homepage: str | None = None
    license: str | None = None
    authors: list[str | dict[str, Any]] | str | None = None
    extra: dict[str, Any] = {}

    @property
    def effective_publisher(self) -> str:
        return self.publisher if self.publisher is not None else DEFAULT_PUBLISHER

    def to_dict(self) -> dict[str, Any]:
        """The meta as the plugin gave it: known fields plus the kept extras."""
        data = msgspec.to_builtins(self)
        extra = data.pop("extra", {})
        return {**data, **extra}


class PythonEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`entry` of a python plugin: where its `run` function lives."""

    callable: str


class ContainerSpec(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """`container` of a container plugin (docs/reference/container-manifest.md).

    Unknown fields are refused here, unlike in meta: a misspelt `netwrok: true`
    or `read_only` silently ignored would change what a container may touch.
    """

    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = {}
    network: bool = False
    pull: PullPolicy = "missing"
    resources: Resources | None = None
    #: named read-only host folders the user supplies (`--mount NAME=PATH`)
    mounts: dict[str, MountDecl] = {}
    #: seconds between SIGTERM and SIGKILL when the container is stopped
    stop_grace_s: float | None = None
    #: Linux capabilities given back after all are dropped, e.g. ["SYS_NICE"]
    capabilities: list[str] = []
    read_only_rootfs: bool = False


class PluginSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A validated plugin: meta plus how to run it."""

    meta: PluginMeta
    entry: PythonEntry | None = None
    container: ContainerSpec | None = None
    #: deprecation notes and the like, shown by `plugins info`
    notes: list[str] = []


def is_slug(value: object) -> bool:
    return isinstance(value, str) and SLUG_RE.match(value) is not None


#: a version of dotted numbers (`1.0.3`, `2024.11`): PEP 440 takes every one, and
#: nearly every plugin has one, so the two full patterns below (3 ms to compile, on
#: every `plugins list`) are compiled by `re` only for the rest
_PLAIN_VERSION_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*\Z")
#: SemVer 2.0.0 (the regular expression semver.org gives)
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"
)
#: a PEP 440 version (the pattern of its appendix B, as `packaging` uses it)
_PEP440 = (
    r"(?i)^v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?"
    r"(?:[-_.]?dev[-_.]?[0-9]*)?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\Z"
)


def is_version(value: str) -> bool:
    """Whether `value` is a SemVer or a PEP 440 version: what people and tools can
    order. The contract takes any string; this only decides whether to say so."""
    if _PLAIN_VERSION_RE.match(value):
        return True
    return bool(re.match(_SEMVER, value) or re.match(_PEP440, value))


def api_major(api_version: str) -> int | None:
    match = _API_RE.match(api_version)
    return int(match.group(1)) if match else None


def _callable_ref(func: Callable[..., Any]) -> str:
    return f"{func.__module__}:{func.__qualname__}"


def _from_flat(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert the pre-v0.1 flat shape (id/kind/... at top level) to meta + entry."""
    flat = dict(data)
    run = flat.pop("run", None)
    run_ref = flat.pop("run_ref", None)
    entry = flat.pop("entry", None)
    container = flat.pop("container", None)
    flat.setdefault("api_version", API_VERSION)
    shaped: dict[str, Any] = {"meta": flat}
    if entry is not None:
        shaped["entry"] = entry
    elif isinstance(run_ref, str):
        shaped["entry"] = {"callable": run_ref}
    elif isinstance(run, str):
        shaped["entry"] = {"callable": run}
    elif callable(run):
        shaped["entry"] = {"callable": _callable_ref(run)}
    if container is not None:
        shaped["container"] = container
    # the advice names the section this plugin needs: a container plugin told to
    # add entry.callable would be broken by following it
    section = (
        "'container': {...}"
        if "container" in shaped or flat.get("kind") == "container"
        else "'entry': {'callable': 'module:run'}"
    )
    note = (
        "deprecated flat plugin shape (id/kind/... at the top level); use "
        f"{{'meta': {{...}}, {section}}} instead"
    )
    return shaped, [note]


def _explain(error: msgspec.ValidationError) -> str:
    """Rewrite msgspec's message as `<field>: <problem>` in contract terms."""
    field, problem = schema_problem(str(error))
    if problem == "is not a known field":
        path, _, name = field.rpartition(".")
        return f"{field} {problem}" + _did_you_mean(name, path)
    if problem.startswith("invalid enum value "):
        return f"{field}: {_enum_problem(field, problem.removeprefix('invalid enum value '))}"
    if problem.startswith("is "):
        return f"{field} {problem}"
    return f"{field}: {problem}" if field else problem


def _type_at(path: str) -> Any:
    """The contract's type of the field at a dotted path as msgspec names it
    (`container.resources`, `container.mounts[...]`), optional unions unwrapped.

    Only an invalid plugin gets here, so msgspec.inspect is imported here, not by
    every listing."""
    import msgspec.inspect

    info: Any = msgspec.inspect.type_info(PluginSpec)
    for part in re.findall(r"\[\.\.\.\]|[^.\[]+", path):
        info = _unwrapped(info)
        if part == "[...]" and isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            if part not in fields:
                return None
            info = fields[part]
        else:
            return None
    return _unwrapped(info)


def _unwrapped(info: Any) -> Any:
    """`Resources | None` -> `Resources`: the part of a union that holds fields or values."""
    import msgspec.inspect

    if isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            if isinstance(member, (msgspec.inspect.StructType, msgspec.inspect.LiteralType)):
                return member
    return info


def _did_you_mean(name: str, path: str) -> str:
    """`; did you mean container.network?` and the known fields, for a misspelt field
    of a strict section (`container`, `entry`, `container.resources`, a mount)."""
    import msgspec.inspect

    info = _type_at(path)
    if not isinstance(info, msgspec.inspect.StructType):
        return ""
    fields = [f.encode_name for f in info.fields]
    close = close_matches(name, fields)
    hint = f"; did you mean {path}.{close[0]}?" if close else ""
    return f"{hint}; known fields of {path}: {', '.join(fields)}"


def _enum_problem(field: str, value: str) -> str:
    """`'nevr' is not one of 'missing', 'always', 'never'; did you mean 'never'?`:
    msgspec's `invalid enum value 'nevr'` named neither the choices nor the near one."""
    import msgspec.inspect

    info = _type_at(field)
    # `gpus` takes "all" or a count or ids: naming only "all" would mislead
    if not isinstance(info, msgspec.inspect.LiteralType) or _also_other_types(field):
        return f"invalid enum value {value}"
    choices = [str(v) for v in info.values]
    close = close_matches(value.strip("'"), choices)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{value} is not one of {', '.join(repr(c) for c in choices)}{hint}"


def _also_other_types(field: str) -> bool:
    """Whether the field at `field` takes other values than its literals (and null)."""
    import msgspec.inspect

    path, _, name = field.rpartition(".")
    holder = _type_at(path)
    if not isinstance(holder, msgspec.inspect.StructType):
        return False
    (declared,) = (f.type for f in holder.fields if f.encode_name == name)
    if not isinstance(declared, msgspec.inspect.UnionType):
        return False
    return any(
        not isinstance(t, (msgspec.inspect.LiteralType, msgspec.inspect.NoneType))
        for t in declared.types
    )


def _meta_slips(meta_extra: dict[str, Any]) -> list[tuple[str, str]]:
    """(given, meant) for each free-form `meta` field that is a near miss of a contract
    field: `config_shema` is kept as data and the config goes unchecked, without a word."""
    known = [f for f in PluginMeta.__struct_fields__ if f != "extra"]
    slips = []
    for name in meta_extra:
        close = close_matches(name, known, cutoff=0.8)
        if close:
            slips.append((name, close[0]))
    return slips


def parse_plugin(data: object) -> PluginSpec:
    """Validate a plugin dict against the contract and return it typed.

    Raises InvalidPlugin with a one-line reason naming the field; the caller adds
    where the dict came from.
    """
    if not isinstance(data, dict):
        raise InvalidPlugin(f"expected a dict, got {type(data).__name__}")
    notes: list[str] = []
    if "meta" not in data and "id" in data:
        data, notes = _from_flat(data)
    problem = find_unsafe_json(data)
    if problem:
        raise InvalidPlugin(f"not JSON-safe: {problem}")
    meta_in = data.get("meta")
    if not isinstance(meta_in, dict):
        got = "missing" if meta_in is None else a_type(meta_in)
        raise InvalidPlugin(
            f"meta is {got}; expected an object with api_version, id, kind, version and description"
        )
    unknown_top = sorted(set(data) - {"meta", "entry", "container"})
    if unknown_top:
        notes.append("ignored unknown top-level field(s): " + ", ".join(unknown_top))
    known = set(PluginMeta.__struct_fields__) - {"extra"}
    meta_known = {k: v for k, v in meta_in.items() if k in known}
    meta_extra = {k: v for k, v in meta_in.items() if k not in known}
    shaped = {"meta": meta_known}
    for key in ("entry", "container"):
        if data.get(key) is not None:
            shaped[key] = data[key]
    container_in = data.get("container")
    if isinstance(container_in, dict):
        for field in ("command", "entrypoint"):
            if isinstance(container_in.get(field), str):
                raise InvalidPlugin(
                    f"container.{field} is a string; give an argv list such as "
                    '["sh", "-c", "..."] (a shell string is never split for you)'
                )
        env = container_in.get("env")
        if isinstance(env, dict):
            # msgspec names the place of a wrong value `container.env[...]`, not its name
            for name, value in env.items():
                if isinstance(name, str) and not isinstance(value, str):
                    text = json.dumps(value)
                    fix = (
                        f'; quote it ("{name}": "{text}")'
                        if isinstance(value, (int, float, bool)) or value is None
                        else ""
                    )
                    raise InvalidPlugin(
                        f"container.env.{name}: expected a string, got "
                        f"{type(value).__name__} {text}{fix}"
                    )
    slips = _meta_slips(meta_extra)
    try:
        spec = msgspec.convert(shaped, PluginSpec)
    except msgspec.ValidationError as exc:
        message = _explain(exc)
        for given, meant in slips:
            if message == f"meta.{meant} is missing (required)":
                message += f"; meta has {given!r}: did you mean {meant!r}?"
        raise InvalidPlugin(message) from None
    notes += [
        f"meta.{given} is no field of the contract, so it is kept as free-form data and "
        f"means nothing to mdivicomtools; did you mean meta.{meant}?"
        for given, meant in slips
    ]
    spec.meta.extra = meta_extra
    _check_semantics(spec)
    if spec.container is not None:
        notes += short_name_notes(spec.container.image)
        notes += placeholder_slips(spec.container.command, "container.command")
        notes += placeholder_slips(spec.container.entrypoint, "container.entrypoint")
    spec.notes = notes
    return spec


def _check_semantics(spec: PluginSpec) -> None:
    meta = spec.meta
    major = api_major(meta.api_version)
    if major is None:
        raise InvalidPlugin(
            f"meta.api_version {meta.api_version!r} is not of the form "
            f"'mdivicomtools.plugin.v<major>[.<minor>]' (this release speaks {API_VERSION!r})"
        )
    if major not in SUPPORTED_API_MAJORS:
        raise InvalidPlugin(
            f"meta.api_version {meta.api_version!r} has unknown major v{major}; this "
            f"release of mdivicomtools speaks {API_VERSION!r} (upgrade mdivicomtools)"
        )
    for field in ("id", "publisher"):
        value = getattr(meta, field)
        if value is not None and not is_slug(value):
            raise InvalidPlugin(
                f"meta.{field} {value!r} is not a safe slug: use 1-64 lowercase letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )
    if meta.kind == "python":
        if spec.entry is None:
            raise InvalidPlugin("entry.callable is missing (required for kind 'python')")
        if not _CALLABLE_RE.match(spec.entry.callable):
            raise InvalidPlugin(
                f"entry.callable {spec.entry.callable!r} is not of the form "
                "'package.module:function'"
            )
        if spec.container is not None:
            raise InvalidPlugin("container is given but meta.kind is 'python'")
    else:
        if spec.container is None:
            raise InvalidPlugin("container is missing (required for kind 'container')")
        if spec.entry is not None:
            raise InvalidPlugin("entry is given but meta.kind is 'container'")
        if not spec.container.image.strip():
            raise InvalidPlugin("container.image is empty")
        problem = reference_problem(spec.container.image)
        if problem:
            raise InvalidPlugin(
                f"container.image {spec.container.image!r} is not an image reference the "
                f"engines accept: {problem}"
            )
        _check_container(spec.container)


def _check_container(container: ContainerSpec) -> None:
    """The container fields msgspec's types cannot check: sizes, paths, capability names,
    environment names."""
    try:
        if container.resources is not None:
            check_resources(container.resources, "container.resources")
        check_mount_targets(container.mounts)
        check_env(container.env, "container.env")
        check_argv(container.command, "container.command")
        check_argv(container.entrypoint, "container.entrypoint")
        check_capabilities(container.capabilities, "container.capabilities")
    except ValueError as exc:
        raise InvalidPlugin(str(exc)) from None
    if container.entrypoint in ([], [""]) and not container.command:
        # Docker then runs the image's CMD on its own, Podman refuses to create the
        # container: the same manifest must not mean two things
        raise InvalidPlugin(
            f"container.entrypoint is {json.dumps(container.entrypoint)}, which clears the "
            "image's ENTRYPOINT and its CMD; "
            'give the argv to run as container.command (e.g. ["sh", "-c", "..."]), or '
            "drop entrypoint to keep the image's"
        )
    if container.stop_grace_s is not None and not 0 <= container.stop_grace_s <= 3600:
        raise InvalidPlugin(
            f"container.stop_grace_s must be between 0 and 3600 seconds, "
            f"got {container.stop_grace_s:g}"
        )
