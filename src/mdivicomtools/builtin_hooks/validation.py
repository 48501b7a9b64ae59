"""Built-in pre-run checks: dataset, output folder, config schema, existing output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mdivicomtools.markers import hookimpl
from mdivicomtools.records import RUNS_DIR, output_owner
from mdivicomtools.run_types import RunRequest
from mdivicomtools.staging import STAGING_DIR


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_dataset(request: RunRequest) -> list[str]:
    dataset = request.dataset_dir
    if not dataset.exists():
        return [f"--dataset {str(dataset)!r} does not exist; give an existing dataset folder"]
    if not dataset.is_dir():
        return [f"--dataset {str(dataset)!r} is not a folder; give the dataset's folder"]
    return []


def check_out_dir(request: RunRequest) -> list[str]:
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
    own = [out / request.plugin.id, out / STAGING_DIR, out / RUNS_DIR]
    if any(_inside(dataset, folder) for folder in own):
        return [
            f"the dataset {str(dataset)!r} is inside {str(out / request.plugin.id)!r} or "
            f"the run's own folders under --out, which this run would replace or write; "
            "copy it elsewhere or choose another --out"
        ]
    if _inside(request.work_dir.resolve(), dataset):
        return [
            f"--work {str(request.work_dir)!r} is inside the dataset {str(dataset)!r}, which "
            "must stay read-only; choose a work folder outside the dataset"
        ]
    return []


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
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [
            f"plugin {request.plugin.ref} declares an invalid config_schema ({exc.message}); "
            "report this to the plugin's authors"
        ]
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(request.config), key=lambda e: list(e.absolute_path))
    return [f"{_location(error.absolute_path)}: {error.message}" for error in errors]


def check_existing_output(request: RunRequest) -> list[str]:
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
    if request.overwrite or request.dry_run:
        return []
    since = f" (from run {owner[1]})" if owner else ""
    return [
        f"{str(target)!r} already exists{since}; pass --overwrite to replace it once the new "
        "run succeeds, or choose another --out"
    ]


@hookimpl
def mdivicom_validate_run(request: RunRequest) -> list[str]:
    problems = check_dataset(request)
    if not problems:
        problems += check_out_dir(request)
    problems += check_config(request)
    problems += check_existing_output(request)
    return problems
