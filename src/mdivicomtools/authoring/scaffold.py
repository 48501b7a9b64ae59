"""`mdivicom plugins new`: a plugin package that conforms and tests itself from the start."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from mdivicomtools.errors import UsageError
from mdivicomtools.model.contract import API_VERSION, InvalidPlugin, is_slug, parse_plugin

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
# the version is {package}.__version__, the one place to bump it: meta.version
# and provenance.json read it too, so records and bundles name the code they ran
dynamic = ["version"]
description = "An mdivicomtools plugin: {id}."
requires-python = ">=3.10"
# add what run.py imports (numpy, scipy, ...): `pip install` of your package
# must bring it, or each run fails with ModuleNotFoundError
dependencies = ["mdivicomtools"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."mdivicomtools.plugins"]
"{id}" = "{package}.plugin:get_plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.dynamic]
version = {{attr = "{package}.__version__"}}
"""

INIT = '''\
"""{id}: an mdivicomtools plugin."""

#: the package's version, and the plugin's meta.version and provenance.json's
__version__ = "0.1.0"
'''

PLUGIN = '''\
"""Registration: imported to list the plugin, so keep heavy imports out of here."""

from {package} import __version__


def get_plugin() -> dict:
    return {{
        "meta": {{
            "api_version": "{api}",
            "id": "{id}",
            "kind": "python",
            "version": __version__,
            "publisher": "{publisher}",
            "description": "TODO: say in one line what {id} does.",
            "config_schema": {{
                "type": "object",
                "properties": {{"pattern": {{"type": "string", "default": "*"}}}},
                "additionalProperties": False,
            }},
        }},
        "entry": {{"callable": "{package}.run:run"}},
    }}
'''

RUN = '''\
"""The plugin's work; heavy imports (numpy, torch, ...) belong here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mdivicomtools.resultbundle import write_resultbundle
from {package} import __version__


def run(
    dataset_dir: str,
    out_dir: str,
    config: dict[str, Any],
    *,
    work_dir: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    files = sorted(p for p in Path(dataset_dir).rglob(config.get("pattern", "*")) if p.is_file())
    summary = {{"files": len(files)}}
    if dry_run:
        return {{"status": "dry_run", **summary}}
    Path(out_dir, "summary.json").write_text(json.dumps(summary, indent=2) + "\\n")
    # never the raw config: it may hold passwords or tokens (the run record keeps
    # a redacted copy and the config's sha256)
    provenance = {{"tool": "{id}", "version": __version__, "config_keys": sorted(config)}}
    Path(out_dir, "provenance.json").write_text(json.dumps(provenance, indent=2) + "\\n")
    write_resultbundle(out_dir, resultbundle_type="{publisher}.{id}.v1")
    return {{"status": "ok", **summary}}
'''

PY_TEST = '''\
"""Tests through the real mdivicomtools pipeline (fixtures from mdivicomtools.testing)."""

import json
from pathlib import Path

from mdivicomtools.testing import assert_plugin_conforms


def test_counts_the_sample_session(mdivicom_run):
    record = mdivicom_run("{id}", config={{"pattern": "*.wav"}})
    assert record.status == "succeeded"
    assert json.loads((Path(record.out_dir) / "summary.json").read_text()) == {{"files": 2}}
    assert record.resultbundles[0].valid is True


def test_conforms_to_the_contract():
    assert_plugin_conforms("{id}")
'''

MANIFEST_TEST = '''\
"""Checks the manifest through the real pipeline; needs Docker or Podman with the image."""

from pathlib import Path

from mdivicomtools.testing import assert_plugin_conforms

# this project's folder only: a MDIVICOM_PLUGIN_PATH set in your shell may name
# another copy of {id}.json (which would clash) or none at all
HERE = str(Path(__file__).resolve().parents[1])


def test_conforms_to_the_contract(monkeypatch):
    monkeypatch.setenv("MDIVICOM_PLUGIN_PATH", HERE)
    assert_plugin_conforms("{id}")
'''

README = """\
# {id}

An mdivicomtools plugin, scaffolded by `mdivicom plugins new`.

{install}
    mdivicom plugins check {id}
    pytest
"""


def distribution_name(plugin_id: str) -> str:
    """The package name for `plugin_id`, in the normalised form PEP 503/508 accept.

    A slug may end in `-`, `_` or `.` and hold runs of them, which a project
    name may not: setuptools refuses `mdivicom-counts-` at build time.
    """
    return "mdivicom-" + "-".join(part for part in re.split(r"[-_.]+", plugin_id) if part)


def scaffold(
    name: str,
    *,
    kind: str = "python",
    folder: str | Path | None = None,
    publisher: str = "local",
    image: str = "docker.io/library/busybox:1.36",
) -> Path:
    """Write a new plugin project for `name` and return its folder."""
    if not is_slug(name):
        raise UsageError(
            f"{name!r} is not a plugin id: use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if not is_slug(publisher):
        raise UsageError(
            f"--publisher {publisher!r} is not a slug: use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if kind not in ("python", "container"):
        raise UsageError(f"--kind must be python or container, got {kind!r}")
    root = Path(folder) if folder is not None else Path(name)
    if root.exists():
        raise UsageError(f"{str(root)!r} already exists; choose another name or --dir")
    values = {
        "id": name,
        "publisher": publisher,
        "api": API_VERSION,
        "package": "mdivicom_" + name.replace("-", "_").replace(".", "_"),
        "dist": distribution_name(name),
    }
    files: dict[str, str] = {}
    if kind == "python":
        package = f"src/{values['package']}"
        files = {
            "pyproject.toml": PYPROJECT.format(**values),
            f"{package}/__init__.py": INIT.format(**values),
            f"{package}/plugin.py": PLUGIN.format(**values),
            f"{package}/run.py": RUN.format(**values),
            f"tests/test_{values['package']}.py": PY_TEST.format(**values),
            "README.md": README.format(id=name, install="    pip install -e '.[test]'"),
        }
    else:
        manifest = {
            "meta": {
                "api_version": API_VERSION,
                "id": name,
                "kind": "container",
                "version": "0.1.0",
                "publisher": publisher,
                "description": f"TODO: say in one line what {name} does.",
            },
            "container": {
                "image": image,
                "pull": "missing",
                "network": False,
                "command": [
                    "sh",
                    "-c",
                    "ls -R {dataset_dir} > {out_dir}/listing.txt && "
                    # the runner gives meta.version as $MDIVICOM_PLUGIN_VERSION: one place
                    f'printf \'{{"tool": "{name}", "version": "%s"}}\\n\' '
                    '"$MDIVICOM_PLUGIN_VERSION" > {out_dir}/provenance.json',
                ],
            },
        }
        try:
            # what discovery will read: a scaffold must never be listed as broken
            parse_plugin(manifest)
        except InvalidPlugin as exc:
            raise UsageError(f"--image {image!r}: {exc}") from None
        files = {
            f"{name}.json": json.dumps(manifest, indent=2) + "\n",
            "tests/test_manifest.py": MANIFEST_TEST.format(**values),
            "README.md": README.format(
                id=name, install=f"    export MDIVICOM_PLUGIN_PATH=$PWD   # {name}.json is here"
            ),
        }
    write_project(root, files)
    return root


def write_project(root: Path, files: dict[str, str]) -> None:
    """Write `files` into the new folder `root`, all of them or none.

    A --dir that cannot be made (a path through a file, a read-only or foreign
    folder) ended in an internal error, and one that failed half-way (a full disk)
    left a folder the next try refused as existing.
    """
    try:
        root.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"{str(root)!r} already exists; choose another name or --dir") from None
    except OSError as exc:
        raise UsageError(_not_written(root, exc)) from None
    try:
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise UsageError(_not_written(root, exc)) from None


def _not_written(root: Path, exc: OSError) -> str:
    cause = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return (
        f"cannot write the plugin into {str(root)!r} ({cause}); nothing was written, "
        "choose another --dir"
    )
