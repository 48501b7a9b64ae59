"""`mdivicom rerun`: run again exactly what a record describes, then compare.

The same plugin at the same version, the same config (secrets, redacted in
the record, supplied again), the same dataset (or a copy of it), the same
--timeout and --isolate, and for a container plugin the very image the record
pinned, by image id (a tag may have been moved since), under the limits and
with the named mounts it ran with. The new record links to the original (`rerun_of`),
and its outputs are compared with the original inventory file by file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

from mdivicomtools.common.home import expand_home
from mdivicomtools.common.secrets import ConfigPath, format_path, secret_paths, value_at
from mdivicomtools.common.timefmt import stamp_id
from mdivicomtools.discovery import ENTRY_POINT_GROUP, resolve, scan_entry_points
from mdivicomtools.errors import UsageError, given_path, given_run_id
from mdivicomtools.model.imageref import is_image_id
from mdivicomtools.model.layout import BATCHES_DIR, runs_dir
from mdivicomtools.model.options import RunOptions
from mdivicomtools.model.run import RunRecord, status_words
from mdivicomtools.records.store import find_kept_run, stored_document
from mdivicomtools.records.verify import compare_outputs, recorded_dataset
from mdivicomtools.runner import run_plugin
from mdivicomtools.runner.config import REDACTED, apply_sets, config_sha256
from mdivicomtools.runner.images import ImagesNotManaged, ensure_pinned_image
from mdivicomtools.runner.prepare import ValidationFailed
from mdivicomtools.runner.stamps import is_sidecar, same_apart_from_run_stamps
from mdivicomtools.settings import BACKEND_ENV

#: where a rerun writes when no --out is given: beside the original, never over it
RERUNS_DIR = "_reruns"


class VersionChanged(UsageError):
    """The installed plugin is not the version the record names."""


class SecretsMissing(UsageError):
    """The record redacted config values that the rerun was not given again."""


class DatasetGone(UsageError):
    """The dataset the record names is gone, and no --dataset says where it is now."""


class RerunReport(msgspec.Struct, kw_only=True):
    """The new run and how its outputs compare with the original's."""

    original: str
    record: RunRecord
    identical: list[str]
    #: result bundle sidecars that differ only in their run stamps (`created_at`,
    #: `producer.pipeline_run_id`): the same data, written by another run
    stamped: list[str] = []
    differing: list[str]
    missing: list[str]
    extra: list[str]
    config_matches: bool
    dataset_matches: bool | None
    image: str | None = None
    #: the backend the original ran on, when the rerun ran on another (MDIVICOM_BACKEND)
    moved_from_backend: str | None = None
    #: whether each named mount's folder has the fingerprint it had (None: no mounts)
    mounts_match: bool | None = None
    #: what the original record does not say (a record of an older release), so the
    #: rerun could not repeat or compare it, and what it did instead; one line each
    unrecorded: list[str] = []

    @property
    def same_outputs(self) -> bool:
        return self.record.status == "succeeded" and not (
            self.differing or self.missing or self.extra
        )


def redacted_places(config: Any) -> list[ConfigPath]:
    """Where `config` still holds the placeholder for a secret the record redacted.

    Found by the walk that redacted them (`secret_paths`), so a secret inside
    an array (`servers[0].token`) is found as surely as one inside an object.
    """
    return [path for path in secret_paths(config) if value_at(config, path) == REDACTED]


def redacted_keys(config: Any) -> list[str]:
    """The key paths (`api.token`, `servers[0].token`) whose value the record redacted."""
    return [format_path(path) for path in redacted_places(config)]


def _supply_hint(path: ConfigPath) -> str:
    """How to give a redacted value again: `--set` names object keys only.

    `--set` cannot reach into an array, nor name a key with a dot in it, so
    such a secret is given with the first value it can name, whole, as JSON
    (that replaces the record's value, placeholders and all).
    """
    reachable: list[str] = []
    for step in path:
        if isinstance(step, int) or not step or "." in step or "=" in step:
            break
        reachable.append(step)
    if len(reachable) == len(path):
        return f"--set {'.'.join(reachable)}=..."
    if not reachable:
        return (
            f"{format_path(path)} cannot be named with --set (its top-level key has a dot "
            "in it); run the plugin again with the full --config instead"
        )
    whole = ".".join(reachable)
    kind = "array" if isinstance(path[len(reachable)], int) else "object"
    return (
        f"--set '{whole}=...' with the whole {kind} as JSON, the secret filled in "
        f"(--set cannot name {format_path(path)} on its own)"
    )


def image_refs(original: RunRecord) -> list[str]:
    """How to name the exact image a container run used, best first.

    The image id is exact and needs no registry; the repo digests
    (`name@sha256:...`) name the same content and can be pulled from a
    registry when the image is no longer on the engine. A tag is never used.
    """
    container = original.container
    if container is None:
        return []
    refs = [container.image_id] if container.image_id else []
    return refs + [d for d in container.repo_digests if "@sha256:" in d]


def _dataset_matches(original: RunRecord, new: RunRecord) -> bool | None:
    if original.dataset is None or new.dataset is None:
        return None
    if original.dataset.digest and new.dataset.digest:
        return original.dataset.digest == new.dataset.digest
    return original.dataset.fingerprint == new.dataset.fingerprint


def _mounts_match(original: RunRecord, new: RunRecord) -> bool | None:
    def prints(record: RunRecord) -> dict[str, str | None]:
        applied = record.container.applied if record.container is not None else None
        return {m.name: m.fingerprint for m in applied.mounts} if applied is not None else {}

    before = prints(original)
    return None if not before else before == prints(new)


def _stamped_only(
    original: RunRecord, original_dir: Path, new: RunRecord, modified: list[str]
) -> list[str]:
    """The modified sidecars that differ from the original only in their run stamps.

    The original's files are read from the folder it was found in (results
    travel), and only while they still have the sha256 the original recorded.
    """
    recorded = {f.path: f.sha256 for f in original.outputs}
    return [
        path
        for path in modified
        if is_sidecar(path)
        and (sha := recorded.get(path)) is not None
        and same_apart_from_run_stamps(original_dir / path, sha, Path(new.out_dir) / path)
    ]


def unrecorded(original: RunRecord, stored: Any, timeout: float | None) -> list[str]:
    """What `original` could not tell the rerun, because an older release (or, for the
    container settings, a site's backend) did not record it.

    The typed record fills such fields with their defaults, which would make a
    rerun of an older record quietly run without the original's --timeout,
    in-process, or under today's container limits; each gap is named instead.
    `stored` is the record file as plain JSON, where an absent field shows.
    """
    notes = []
    fields = {"timeout_s": "--timeout"}
    if original.plugin.kind == "python":  # a container is isolated whatever --isolate says
        fields["isolate"] = "--isolate"
    absent = [key for key in fields if isinstance(stored, dict) and key not in stored]
    if absent:
        done = {
            "timeout_s": f"with --timeout {timeout:g}"
            if timeout is not None
            else "without a timeout",
            "isolate": "in-process",
        }
        notes.append(
            f"{' and '.join(fields[key] for key in absent)}: not in the record (an older "
            f"release); the rerun ran {' and '.join(done[key] for key in absent)}"
        )
    if original.container is not None and original.container.applied is None:
        container = stored.get("container") if isinstance(stored, dict) else None
        # this release writes `applied` (null when the backend left it out): a site's
        # backend that did not set it was called "an older release"
        why = (
            f"not recorded by the {original.backend.name} backend (it left "
            "outcome.container.applied out)"
            if isinstance(container, dict) and "applied" in container
            else "not in the record (an older release)"
        )
        notes.append(
            f"container limits and mounts: {why}; the rerun ran under those the manifest "
            "and the user config give now"
        )
    if original.dataset is None:
        notes.append(
            "dataset: not in the record (it predates dataset fingerprints); the dataset "
            "could not be compared"
        )
    return notes


def _original(out: Path, run_id: str) -> RunRecord:
    """The record to repeat; `latest` is the newest succeeded run (`find_kept_run`):
    only a succeeded run has outputs to compare with."""
    return find_kept_run(
        out,
        run_id,
        why="rerun repeats a succeeded run, whose outputs it can compare with",
        command="rerun",
    )


def rerun_options(
    original: RunRecord,
    *,
    out: Path,
    new_out: str | Path | None,
    dataset: str | Path | None,
    sets: Sequence[str],
    allow_version_change: bool,
    timeout: float | None = None,
) -> RunOptions:
    """The RunOptions that repeat `original`; raises UsageError when it cannot be repeated."""
    if original.status != "succeeded":
        raise UsageError(
            f"run {original.run_id} {status_words(original.status)}; "
            "rerun repeats a succeeded run, whose outputs it can compare with"
        )
    config = apply_sets(original.config, sets)
    missing = redacted_places(config)
    if missing:
        hints = "; ".join(dict.fromkeys(_supply_hint(path) for path in missing))
        raise SecretsMissing(
            f"the record redacted {', '.join(format_path(path) for path in missing)}; "
            f"supply the value(s) again: {hints}"
        )
    found = resolve(
        original.plugin.ref, entry_points=scan_entry_points(ENTRY_POINT_GROUP)[ENTRY_POINT_GROUP]
    )
    installed = found.spec.meta.version if found.spec is not None else "?"
    if installed != original.plugin.version and not allow_version_change:
        raise VersionChanged(
            f"run {original.run_id} used {original.plugin.ref} {original.plugin.version}, but "
            f"{installed} is installed; install {original.plugin.version} to repeat it exactly, "
            "or pass --allow-version-change"
        )
    recorded = recorded_dataset(original, expand_home(out).absolute())
    if dataset is None and not recorded.is_dir():
        # validation would blame a `--dataset` the user never gave
        raise DatasetGone(
            f"the dataset run {original.run_id} read, {str(recorded)!r}, is gone; "
            + (
                "it was another plugin's output in the same --out: run that plugin again, "
                "or pass --dataset DIR where a copy is"
                if _chained(recorded, expand_home(out).absolute())
                else "pass --dataset DIR where it is now"
            )
        )
    refs = image_refs(original)
    target = (
        expand_home(new_out).absolute()
        if new_out is not None
        else expand_home(out).absolute() / RERUNS_DIR / stamp_id()
    )
    return RunOptions.build(
        # a dataset inside the original's run root moved with it (a chained run)
        dataset=str(dataset) if dataset is not None else str(recorded),
        out=str(target),
        config=config,
        backend=rerun_backend(original),
        timeout=timeout if timeout is not None else original.timeout_s,
        isolate=original.isolate,
        hash_dataset=original.dataset is not None and original.dataset.digest is not None,
        image=refs[0] if refs else None,
        # the record keeps naming the image as the original did; the pin is its image_id
        image_name=(
            original.container.image
            if original.container is not None and not is_image_id(original.container.image)
            else None
        ),
        rerun_of=original.run_id,
        **_container_options(original),
    )


def rerun_backend(original: RunRecord) -> str | None:
    """The backend a rerun asks for: the original's, unless MDIVICOM_BACKEND names one
    for a container plugin.

    MDIVICOM_BACKEND is a site's rule (Podman where Docker is not allowed), so it
    wins over the record as it wins over a run's default: None lets it choose, as
    strictly as for `run`. The image stays pinned by id and repo digests on the
    other engine (an image carried over with `images save` and `images load` keeps
    its id), so the rerun still runs that image or is refused. A python plugin
    reruns where it ran, as before.
    """
    chosen = os.environ.get(BACKEND_ENV, "auto")
    if chosen in ("", "auto") or original.plugin.kind != "container":
        return original.backend.name
    return None


def _moved_hint(original: RunRecord, requested: str | None) -> str:
    """Why the pinned image was looked for on another engine than the original's."""
    chosen = os.environ.get(BACKEND_ENV, "")
    if requested is not None or chosen == original.backend.name:
        return ""
    return (
        f"; the original ran on {original.backend.name}, and {BACKEND_ENV}={chosen} sends "
        f"the rerun to {chosen}: carry the image over with `mdivicom images save` and "
        "`mdivicom images load`, which keep its id"
    )


def _chained(dataset: Path, run_root: Path) -> bool:
    """Whether a dataset lay in the run's --out: another plugin's output there, for a
    batch's session in the batch's --out above its run root."""
    roots = [run_root]
    if (run_root.parent / BATCHES_DIR).is_dir():
        roots.append(run_root.parent)
    return any(dataset.is_relative_to(root) for root in roots)


def _container_options(original: RunRecord) -> dict[str, Any]:
    """The limits and named mounts the original container ran under, as run options.

    Given explicitly, they win over the manifest and the user config: either may
    have changed since, and a rerun under another memory limit or with another
    model folder is not the run the record describes.
    """
    applied = original.container.applied if original.container is not None else None
    if applied is None:
        return {}
    gpus = applied.gpus
    return {
        "memory": str(applied.memory) if applied.memory is not None else None,
        "cpus": applied.cpus,
        "shm_size": str(applied.shm_size) if applied.shm_size is not None else None,
        "gpus": (
            "none" if gpus is None else ",".join(gpus) if isinstance(gpus, list) else str(gpus)
        ),
        "mounts": tuple(f"{mount.name}={mount.source}" for mount in applied.mounts),
        "stop_grace": applied.stop_grace_s,
    }


def rerun(
    out: str | Path,
    run_id: str,
    *,
    new_out: str | Path | None = None,
    dataset: str | Path | None = None,
    sets: Sequence[str] = (),
    allow_version_change: bool = False,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
    echo: TextIO | None = None,
) -> RerunReport:
    """Repeat the run `run_id` (or `latest`) recorded under `out`; compare the outputs.

    Raises VersionChanged or SecretsMissing (exit 2) before anything runs, and
    ValidationFailed when the pinned image is neither on the engine by its id
    nor pullable by one of its repo digests (nothing is pulled by tag: that
    might bring a different image).
    """
    out = Path(given_path(out, "out"))
    given_run_id(run_id)
    if new_out is not None:
        given_path(new_out, "new_out")
    original = _original(out, run_id)
    options = rerun_options(
        original,
        out=out,
        new_out=new_out,
        dataset=dataset,
        sets=sets,
        allow_version_change=allow_version_change,
        timeout=timeout,
    )
    refs = image_refs(original)
    # None: run the plugin as the record names it (no pinned image to try)
    choices: list[str | None] = [*refs] if refs else [None]
    problems: list[str] = []
    for ref in choices:
        if ref is not None:
            options = options.with_changes(image=ref)
            if "@sha256:" in ref:  # pulled here, so a digest that is not there is no run
                try:
                    problem = ensure_pinned_image(ref, options.backend, timeout)
                except ImagesNotManaged:
                    problem = None  # a site's own backend: its preflight judges the ref
                if problem is not None:
                    problems.append(problem)
                    continue
        try:
            record = run_plugin(original.plugin.ref, options, progress=progress, echo=echo)
            break
        except ValidationFailed as exc:
            if ref is None or not any(ref in problem for problem in exc.problems):
                raise  # not about the image: trying another reference cannot help
            problems.extend(p for p in exc.problems if p not in problems)
    else:
        assert original.container is not None  # refs is not empty
        digests = ", ".join(original.container.repo_digests) or "none recorded"
        problems.append(
            f"rerun pins the image run {original.run_id} used: {original.container.image} "
            f"as {original.container.image_id} (repo digests: {digests}); it is not on the "
            "engine and could not be pulled by digest; load or pull that exact image (by "
            "digest, not by tag), then rerun" + _moved_hint(original, options.backend)
        )
        raise ValidationFailed(problems)
    changes = compare_outputs(original.outputs, record.outputs)
    stamped = _stamped_only(original, Path(out) / original.plugin.id, record, changes.modified)
    assert isinstance(options.config, dict)  # rerun_options always passes the built config
    return RerunReport(
        original=original.run_id,
        record=record,
        identical=changes.identical,
        stamped=stamped,
        differing=[path for path in changes.modified if path not in stamped],
        missing=changes.missing,
        extra=changes.extra,
        config_matches=config_sha256(options.config) == original.config_sha256,
        dataset_matches=_dataset_matches(original, record),
        image=options.image,
        moved_from_backend=(
            original.backend.name if record.backend.name != original.backend.name else None
        ),
        mounts_match=_mounts_match(original, record),
        unrecorded=unrecorded(
            original,
            stored_document(runs_dir(Path(out)) / f"{original.run_id}.json"),
            options.timeout,
        ),
    )
