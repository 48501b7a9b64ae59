"""Who produced an output folder, and whether a run may replace it.

Both the pre-run validation and the runner (again, under the plugin's lock)
ask this, so the rule lives in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from mdivicomtools.common.sharing import UMASK_HINT, closed_by_another_user
from mdivicomtools.model.layout import runs_dir
from mdivicomtools.model.run import RunRequest
from mdivicomtools.records.store import record_paths


class _OwnerView(msgspec.Struct):
    """Just the fields needed to tell who produced an output folder."""

    class _Plugin(msgspec.Struct):
        id: str
        publisher: str

    run_id: str
    status: str
    started_at: str
    plugin: _Plugin


def _view(path: Path) -> _OwnerView | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=_OwnerView)
    except (OSError, msgspec.DecodeError):
        return None


def output_owner(run_out_dir: Path, plugin_id: str) -> tuple[str, str] | None:
    """(publisher, run_id) of the latest successful run that produced `<out>/<id>/`.

    Every run into an existing output asks this, twice, so it must not read
    every record: in a run root of thousands of runs that was seconds per run,
    growing with each. Records are read newest first by their names, which
    start with the run's start to the second, and the search ends at the first
    second older than a match's; within that second the later `started_at` wins.
    """
    best: _OwnerView | None = None
    for path in reversed(record_paths(run_out_dir)):
        if best is not None and path.stem.split("_")[0] < best.run_id.split("_")[0]:
            break
        view = _view(path)
        if view is None or view.plugin.id != plugin_id or view.status != "succeeded":
            continue
        if best is None or (view.started_at, view.run_id) > (best.started_at, best.run_id):
            best = view
    return (best.plugin.publisher, best.run_id) if best else None


def existing_output_problems(request: RunRequest) -> list[str]:
    """Refuse to replace `<out>/<id>/` unless asked, and never across publishers."""
    target = request.out_dir
    if not target.exists():
        return []
    owner = output_owner(request.run_out_dir, request.plugin.id)
    if owner is not None and owner[0] != request.plugin.publisher:
        return [
            f"{str(target)!r} holds the output of {owner[0]}/{request.plugin.id} (run {owner[1]}), "
            f"another publisher's plugin; choose another --out for {request.plugin.ref}"
        ]
    if request.dry_run:
        return []
    if request.overwrite:
        closed = _not_movable(target)
        return [closed] if closed else []
    since = f" (from run {owner[1]})" if owner else ""
    if request.rerun_of is not None:
        # `rerun` has no --overwrite: it never writes over an output, the
        # original's least of all, so the hint to pass one led nowhere
        return [
            f"{str(target)!r} already exists{since}; a rerun writes into a new folder, never "
            "over an output: choose another --out, or leave it out (OUT/_reruns/<id>/)"
        ]
    return [
        f"{str(target)!r} already exists{since}; pass --overwrite to replace it once the new "
        "run succeeds, or choose another --out"
    ]


def _not_movable(target: Path) -> str | None:
    """Why --overwrite cannot move `target` aside, when it is another user's folder.

    A folder moves into another folder only with write access to itself (its `..`
    entry changes): a colleague's output left 0755 by umask 022, or root's, let
    the plugin run to the end and then failed the run with `PromotionError`.
    """
    # the runner makes its user's own read-only folder writable to move it
    if not target.is_dir() or target.is_symlink():
        return None
    if not closed_by_another_user(target, os.W_OK):
        return None
    return (
        f"{str(target)!r} is another user's folder that this user may not write to, so "
        "--overwrite cannot move it aside; ask its owner to make it group-writable "
        f"(chmod -R g+w) or to remove it ({UMASK_HINT}), or choose another --out"
    )


class ChainedOutput(msgspec.Struct, kw_only=True, frozen=True):
    """The other plugin's output folder a chained run's dataset lies in, as it was.

    A successful run of that plugin replaces the folder by a rename, so a new
    inode there means that run replaced the dataset under this one: the change
    a chained run then sees is not its plugin's doing.
    """

    folder: Path
    plugin_id: str
    inode: tuple[int, int]


def chained_output(dataset: Path) -> ChainedOutput | None:
    """The `<root>/<id>/` of a run root the dataset lies in, if it is one."""
    real = Path(os.path.realpath(dataset))
    try:
        for root in real.parents:
            if not runs_dir(root).is_dir():
                continue
            top = root / real.relative_to(root).parts[0]
            if top.name.startswith("_"):  # _runs, _staging, _batches, _reruns
                return None
            info = top.stat()
            return ChainedOutput(folder=top, plugin_id=top.name, inode=(info.st_dev, info.st_ino))
    except OSError:  # a folder on the way this user may not look into: no chain to tell
        return None
    return None


def replaced_meanwhile(chained: ChainedOutput) -> str | None:
    """Who replaced the dataset's output folder since `chained` was taken, or None."""
    try:
        info = chained.folder.stat()
    except OSError:  # removed, not replaced: nothing says by whom
        return None
    if (info.st_dev, info.st_ino) == chained.inode:
        return None
    # not named by run id: the replacing run's record may not say succeeded yet
    return (
        f"another run of {chained.plugin_id!r} replaced its output {str(chained.folder)!r}, "
        f"which holds this run's dataset, while the plugin ran (the newest record in "
        f"{str(runs_dir(chained.folder.parent))!r} names that run)"
    )
