"""`mdivicom runs export --ro-crate`: a run's provenance as a Workflow Run RO-Crate.

An RO-Crate is the packaging research repositories and workflow systems read:
a folder with the data and an `ro-crate-metadata.json` in JSON-LD. The crate
follows the "Process Run Crate" profile (https://w3id.org/ro/wfrun/process/0.5):
each run is a CreateAction whose instrument is the plugin (and for a
container run the image, by digest), whose object is the dataset and the
config (as PropertyValues), and whose result is the output files, copied into
the crate with the checksums the record holds. The JSON-LD is produced by the
`rocrate` library (ro-crate-py, the extra `mdivicomtools[rocrate]`) rather
than written by hand, so the crate's structure follows the library that
implements the specification.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from mdivicomtools.common.safefs import disk_name, display_name, entry_type, inside, kind_name
from mdivicomtools.common.timefmt import iso, utc_now
from mdivicomtools.errors import UsageError
from mdivicomtools.model.imageref import is_image_id
from mdivicomtools.model.run import ContainerInfo, RunRecord
from mdivicomtools.records.store import (
    RecordNotFound,
    check_output_paths,
    find_kept_run,
    full_record,
    no_records,
    records_for,
    run_roots,
    shown_status,
)

PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
WFRUN = "https://w3id.org/ro/terms/workflow-run#"
#: terms of the Workflow Run vocabulary the crate uses, defined inline so that
#: reading the crate needs no context beyond RO-Crate 1.1's own
WFRUN_TERMS = {
    "ContainerImage": f"{WFRUN}ContainerImage",
    "containerImage": f"{WFRUN}containerImage",
    "registry": f"{WFRUN}registry",
    "tag": f"{WFRUN}tag",
    "sha256": f"{WFRUN}sha256",
}
STATUS = {
    "succeeded": "http://schema.org/CompletedActionStatus",
    "dry_run": "http://schema.org/CompletedActionStatus",
}
FAILED = "http://schema.org/FailedActionStatus"


class CrateUnavailable(UsageError):
    """The `rocrate` library is not installed."""


def _name_part(key: object) -> str:
    """One key of a property name: a backslash and a dot in it escaped by a backslash."""
    return str(key).replace("\\", "\\\\").replace(".", "\\.")


def _flatten(config: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(name, value) of every leaf of the config: nested keys joined by dots.

    A dot or backslash inside a key is escaped (`{"a.b": 1}` is `a\\.b`), so
    `{"a.b": 1, "a": {"b": 2}}` gives two properties, not one name twice (the
    crate kept one value and listed the entity twice).
    """
    if isinstance(config, dict) and config:
        return [
            pair
            for key, value in config.items()
            for pair in _flatten(value, (*path, _name_part(key)))
        ]
    return [(".".join(path), config)] if path else []


def _iso8601(stamp: str) -> str:
    """A record's `...T15:33:22.481Z` as `...T15:33:22.481+00:00`, the form the profile checks."""
    return stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp


def _image_parts(image: str) -> tuple[str, str, str | None]:
    """(registry, name, tag) of an image reference: `localhost/tool:1` is
    ("localhost", "tool", "1"), `lab/tool` is ("docker.io", "lab/tool", None)."""
    name, _, _digest = image.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    has_registry = "/" in name and ("." in first or ":" in first or first == "localhost")
    if has_registry:
        return first, name.split("/", 1)[1], tag
    return "docker.io", name, tag


def _image_reference(container: ContainerInfo) -> str | None:
    """The reference to name the image by: the record's `image`, unless that is an
    image id (older rerun records), then a repo digest's repository; None if neither.

    An id has no registry, name or tag: split as a reference it gave `docker.io`,
    name `sha256` and a tag of hex digits, naming an image that does not exist.
    """
    if not is_image_id(container.image):
        return container.image
    digests = [d for d in container.repo_digests if "@" in d]
    return digests[0].partition("@")[0] if digests else None


#: what `runs export` says when `latest` finds no succeeded run
_NAME_IT = (
    "`latest` is the newest succeeded run, whose outputs the folder holds; name a run by "
    "its id to export one that did not succeed"
)


def _runs_to_export(out: Path, run_id: str) -> list[tuple[str | None, Path, RunRecord]]:
    """(session, run root, record) of each run to export; the run root is where the
    record was found, so a moved output folder still exports.

    `latest` is the newest succeeded run, as for `verify` and `rerun`
    (`find_kept_run`). A batch's --out that is also a run root of its own (a
    batch chained onto a plugin's output in the same --out) exports both with
    `latest`: the folder's newest succeeded run, as for any run root, and
    every session's.
    """
    if not out.is_dir():
        raise UsageError(f"{str(out)!r} is not a folder; give the --out of a run or a batch")
    roots = run_roots(out)
    if not roots:
        raise no_records(out)
    own = roots[0].session is None
    if own and (run_id != "latest" or len(roots) == 1):
        return [(None, out, _ended(out, find_kept_run(out, run_id, why=_NAME_IT)))]
    if run_id != "latest":
        raise UsageError(
            f"{str(out)!r} is a batch folder; export all sessions with 'latest', or one run "
            f"with `mdivicom runs export {out}/<session> {run_id} --ro-crate DIR`"
        )
    chosen: list[tuple[str | None, Path, RunRecord]] = []
    if own:
        chosen.append((None, out, find_kept_run(out, "latest", why=_NAME_IT)))
    for root in roots[1:] if own else roots:
        done = [r for r in records_for(root.folder, "latest") if r.status == "succeeded"]
        if done:
            chosen.append((root.session, root.folder, full_record(done[-1])))
    if not chosen:
        raise RecordNotFound(f"no session under {str(out)!r} has a succeeded run")
    return chosen


def _not_exportable(out_dir: Path, target: Path, recorded: str) -> str:
    """What stands where the record lists an output the crate cannot copy.

    A FIFO, a socket or a device node put in place of an output file was called
    `missing`, which sent the user looking for a file that was there; the
    crate copies no special file (reading a FIFO waits for a writer, a device
    is not data), so it names what it found instead.
    """
    folder = repr(str(out_dir))
    kind = entry_type(target)
    if kind is None:
        return f"is missing from {folder}"
    if kind == "symlink" and not inside(out_dir, target):
        return f"is now a symlink leading out of {folder}, which a crate does not copy"
    said = f"is now {kind_name(kind)} in {folder}, not the {recorded} the record lists"
    if kind in ("file", "dir", "symlink"):
        return said
    return f"{said}; a crate copies no special file"


def _ended(root: Path, record: RunRecord) -> RunRecord:
    """`record`, once its run has ended: a run still in progress has no end time,
    status or outputs yet, and a crate made of its `running` record said it had
    failed."""
    if shown_status(record, root) == "running":
        raise UsageError(
            f"run {record.run_id} ({record.plugin.ref}) under {str(root)!r} is still in "
            "progress; export it once it has ended, or name another run"
        )
    return record


#: the crate's `license` when none is given: RO-Crate requires one, and the data's
#: terms are the lab's to state, not this tool's to guess
NO_LICENSE = (
    "No license was stated when this crate was exported; ask the owners of the dataset "
    "and of the outputs before reuse."
)


def export_crate(out: Path, run_id: str, dest: Path, *, license: str | None = None) -> Path:
    """Write the crate of run `run_id` under `out` (or of every session of a batch) to `dest`.

    Returns the path of `ro-crate-metadata.json`. `dest` must not exist or be
    empty. `license` is a URL (e.g. a Creative Commons licence) or a text;
    without it the crate says that none was stated. The output files are
    copied in; their checksums are the record's, so run `verify` first to
    prove the files still match it. A record listing an output outside its
    output folder is refused (`UnsafeRecordPath`), as `verify` refuses it:
    the record is data, and must not choose which host file is copied.
    """
    try:
        from rocrate.model.contextentity import ContextEntity
        from rocrate.rocrate import ROCrate
    except ImportError:
        from mdivicomtools.common.install import install_hint

        raise CrateUnavailable(
            f"exporting an RO-Crate needs the rocrate library: {install_hint('rocrate')}"
        ) from None
    runs = _runs_to_export(out, run_id)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(
            f"{str(dest)!r} exists and is not an empty folder; choose another --ro-crate"
        )
    for session, root, record in runs:
        # the record's paths are data: checked before anything is copied into the crate
        check_output_paths(record, session)
        out_dir = root / record.plugin.id
        for output in record.outputs:
            target = out_dir / disk_name(output.path, output.escaped)
            # a symlink placed in the folder after the run must not copy a file from
            # elsewhere; one the run left (to a file, a folder, another link, or in a
            # loop of links) is exported as the link it is
            there = target.is_symlink() if output.type == "symlink" else target.is_file()
            if not (there and inside(out_dir, target)):
                where = f"{session}: " if session else ""
                raise UsageError(
                    f"{where}output {output.path!r} of run {record.run_id} "
                    f"{_not_exportable(out_dir, target, output.type)}; nothing was exported "
                    "(`mdivicom verify` shows what changed)"
                )

    # RO-Crate 1.1: the version the Process Run Crate 0.5 profile builds on
    crate = ROCrate(version="1.1")
    crate.metadata.extra_terms.update(WFRUN_TERMS)
    profile = crate.add(
        ContextEntity(
            crate,
            PROCESS_RUN_CRATE,
            properties={"@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
        )
    )
    root = crate.root_dataset
    root["conformsTo"] = profile
    first = runs[0][2]
    if len(runs) == 1:
        root["name"] = f"{first.plugin.ref} {first.plugin.version}, run {first.run_id}"
    elif all(session is not None and r.plugin.ref == first.plugin.ref for session, _, r in runs):
        root["name"] = f"{first.plugin.ref}: {len(runs)} sessions under {out.name}"
    else:  # sessions of a batch chained onto the folder's own run, or of several plugins
        plugins = ", ".join(sorted({r.plugin.ref for _, _, r in runs}))
        root["name"] = f"{len(runs)} runs of {plugins} under {out.name}"
    root["description"] = (
        "Provenance of mdivicomtools runs exported from their run records: the plugin, the "
        "dataset, the config and the output files with their sha256."
    )
    root["datePublished"] = iso(utc_now())
    if license and license.startswith(("http://", "https://")):
        root["license"] = crate.add(
            ContextEntity(crate, license, properties={"@type": "CreativeWork", "name": license})
        )
    else:
        root["license"] = license or NO_LICENSE
    for session, root, record in runs:
        _add_run(crate, ContextEntity, session, root, record)
    made = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        crate.write(dest)
    except BaseException as exc:
        # a --ro-crate through a file or on a read-only mount was an internal error, and
        # one that failed half-way (a full disk, Ctrl-C, an error inside rocrate) left a
        # partial crate behind
        _remove_partial(dest, made)
        if not isinstance(exc, OSError):
            raise
        cause = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        raise UsageError(
            f"cannot write the crate into {str(dest)!r} ({cause}); nothing was written, "
            "choose another --ro-crate"
        ) from None
    return dest / "ro-crate-metadata.json"


def _remove_partial(dest: Path, made: bool) -> None:
    """Remove what a failed export wrote: the folder it made, or the contents of the
    empty one it was given."""
    if made:
        shutil.rmtree(dest, ignore_errors=True)
    elif dest.is_dir():
        for entry in dest.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@functools.cache
def _output_file() -> Any:
    """The rocrate `File` class, copying each output under its crate path's bytes.

    rocrate copies a file to its `@id` decoded as text, which this process
    names in its filesystem encoding: under the C locale with PYTHONUTF8=0
    (ASCII) an output named `grüße.txt` or `日本.csv` stopped the export with
    an internal UnicodeEncodeError. The `@id` is the UTF-8 of the record's
    text, percent-encoded; those bytes are the name the file gets, in any
    locale (in a UTF-8 one, the same name as before).
    """
    from rocrate.model.file import File

    class OutputFile(File):
        def write(self, base_path: Any) -> None:
            destination = Path(base_path) / os.fsdecode(unquote_to_bytes(self.id))
            destination.parent.mkdir(parents=True, exist_ok=True)
            if os.path.islink(self.source):
                # the same relative link at the same place: the crate mirrors the output
                # folder, so it leads where it did (a loop or a link to a folder,
                # which the run keeps, has nothing to copy and stopped the export)
                os.symlink(os.readlink(self.source), destination)
                return
            shutil.copy(self.source, destination)

    return OutputFile


def _add_run(crate: Any, entity: Any, session: str | None, root: Path, record: RunRecord) -> None:
    plugin = record.plugin
    # a session is a folder name read from the disk: in the record's text form, as the
    # crate's ids and names are text (`ses-ü` under an ASCII locale, `ses-\xff02`)
    session = display_name(session)[0] if session else session
    prefix = f"{session}/" if session else ""
    tool_id = f"#plugin/{plugin.publisher}/{plugin.id}/{plugin.version}"
    tool = crate.get(tool_id) or crate.add(
        entity(
            crate,
            tool_id,
            properties={
                "@type": "SoftwareApplication",
                "name": plugin.ref,
                "softwareVersion": plugin.version,
                "description": f"mdivicomtools {plugin.kind} plugin {plugin.ref}",
            },
        )
    )
    instruments = [tool]
    image = None
    if record.container is not None and record.container.image_id:
        hex_id = record.container.image_id.removeprefix("sha256:")
        image_props: dict[str, Any] = {
            "@type": "ContainerImage",
            "additionalType": {"@id": f"{WFRUN}DockerImage"},
            "sha256": hex_id,
        }
        reference = _image_reference(record.container)
        if reference is not None:
            registry, name, tag = _image_parts(reference)
            image_props.update(name=name, registry=registry)
            if tag:
                image_props["tag"] = tag
        image = crate.get(f"#image-{hex_id}") or crate.add(
            entity(crate, f"#image-{hex_id}", properties=image_props)
        )

    dataset_props: dict[str, Any] = {
        "@type": "Dataset",
        "name": Path(record.dataset_dir).name or record.dataset_dir,
        "description": "The input dataset, read-only; not copied into the crate.",
    }
    if record.dataset is not None:
        dataset_props["contentSize"] = str(record.dataset.bytes)
        dataset_props["identifier"] = (
            f"sha256-content-digest:{record.dataset.digest}"
            if record.dataset.digest
            else f"sha256-stat-fingerprint:{record.dataset.fingerprint}"
        )
    # as_uri encodes the path in this process's filesystem encoding, which cannot
    # hold the record's `ses-ü` under the C locale with PYTHONUTF8=0: the record's
    # UTF-8 text becomes this process's name of the folder first (the same bytes)
    dataset_id = Path(disk_name(record.dataset_dir)).as_uri() + "/"
    dataset = crate.get(dataset_id)
    if dataset is None:
        # a data entity by absolute URI: named by the crate, not copied into it
        dataset = crate.add(entity(crate, dataset_id, properties=dataset_props))
        crate.root_dataset.append_to("hasPart", dataset)
    objects = [dataset, *_input_bundles(crate, entity, record)]
    for key, value in _flatten(record.config):
        objects.append(
            crate.add(
                entity(
                    crate,
                    f"#{record.run_id}/config/{quote(key, safe='.-_~')}",
                    properties={
                        "@type": "PropertyValue",
                        "name": key,
                        "value": value
                        if isinstance(value, (str, int, float, bool))
                        else json.dumps(value),
                    },
                )
            )
        )

    results = []
    for output in record.outputs:
        source = root / plugin.id / disk_name(output.path, output.escaped)
        if output.type == "symlink" and not source.exists():
            # a link that leads to no file (a loop of links, a dangling one) cannot be
            # part of the crate's payload: it is described, with where it leads
            results.append(
                crate.add(
                    entity(
                        crate,
                        f"#{prefix}{plugin.id}/{output.path}",
                        properties={
                            "@type": "CreativeWork",
                            "name": f"{prefix}{plugin.id}/{output.path}",
                            "description": "a symbolic link to "
                            f"{display_name(os.readlink(source))[0]!r}, which leads to no file",
                        },
                    )
                )
            )
            continue
        # a symlink's recorded digest is of the text of its target, not of any content
        sha256 = output.sha256 if output.type == "file" else ""
        file_props = {"contentSize": str(output.size), "sha256": sha256}
        media_type, _ = mimetypes.guess_type(output.path)
        if media_type:
            file_props["encodingFormat"] = media_type
        results.append(
            crate.add(
                _output_file()(
                    crate,
                    source,
                    # a name that is not UTF-8 keeps its escaped form: the crate's ids are text
                    dest_path=f"{prefix}{plugin.id}/{output.path}",
                    properties=file_props,
                )
            )
        )

    action_props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"{plugin.ref} {plugin.version} on {dataset_props['name']}"
        + (f" (session {session})" if session else ""),
        "description": f"mdivicomtools run {record.run_id} on the {record.backend.name} backend",
        "identifier": record.run_id,
        "startTime": _iso8601(record.started_at),
        "endTime": _iso8601(record.finished_at),
        "actionStatus": {"@id": STATUS.get(record.status, FAILED)},
    }
    if record.error is not None and record.status not in STATUS:
        action_props["error"] = f"{record.error.type}: {record.error.message}"
    action = crate.add_action(
        instruments[0],
        identifier=f"#run/{record.run_id}",
        object=objects,
        result=results,
        properties=action_props,
    )
    if image is not None:
        action["containerImage"] = image
    crate.root_dataset.append_to("mentions", action)


def _input_bundles(crate: Any, entity: Any, record: RunRecord) -> list[Any]:
    """A `File` for each result bundle the run's dataset held (its `input_bundles`).

    A chain's crate otherwise named only the dataset folder, which the producer's
    next run replaces: the sidecar's sha256 and the producer run it names keep
    saying which result the run consumed. By absolute URI, not copied.
    """
    found = []
    for used in record.input_bundles:
        uri = Path(os.path.normpath(disk_name(f"{record.dataset_dir}/{used.path}"))).as_uri()
        known = crate.get(uri)
        if known is not None:
            found.append(known)
            continue
        made = f" written by run {used.producer_run_id}" if used.producer_run_id else ""
        made += f" of {used.producer}" if used.producer else ""
        props: dict[str, Any] = {
            "@type": "File",
            "name": used.path,
            "encodingFormat": "application/json",
            "description": f"The result bundle {used.type or '(unreadable)'}{made}, read "
            "from the dataset; not copied into the crate.",
        }
        if used.sha256:
            props["sha256"] = used.sha256
        added = crate.add(entity(crate, uri, properties=props))
        crate.root_dataset.append_to("hasPart", added)
        found.append(added)
    return found
