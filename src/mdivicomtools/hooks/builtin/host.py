"""Built-in provenance: the machine and software a run used (the record's `host`)."""

from __future__ import annotations

from typing import Any

import msgspec

from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.records.host import host_info


@hookimpl
def mdivicom_capture_provenance() -> dict[str, Any]:
    return msgspec.to_builtins(host_info())
