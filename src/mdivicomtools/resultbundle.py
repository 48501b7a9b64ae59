"""Result bundles for plugin authors: `write_resultbundle`, the model, the validator.

This is the stable import path plugins use (`from mdivicomtools.resultbundle
import write_resultbundle`); the code lives in `mdivicomtools.bundles`.
"""

from __future__ import annotations

from mdivicomtools.bundles.resultbundle import (
    SIDECAR_NAME,
    BundleFile,
    BundleReport,
    FileTime,
    Problem,
    Producer,
    ResultBundle,
    Source,
    TimeReference,
    UpstreamTool,
    build_resultbundle,
    find_sidecars,
    load_resultbundle,
    validate_data,
    validate_file,
    write_resultbundle,
)

__all__ = [
    "SIDECAR_NAME",
    "BundleFile",
    "BundleReport",
    "FileTime",
    "Problem",
    "Producer",
    "ResultBundle",
    "Source",
    "TimeReference",
    "UpstreamTool",
    "build_resultbundle",
    "find_sidecars",
    "load_resultbundle",
    "validate_data",
    "validate_file",
    "write_resultbundle",
]
