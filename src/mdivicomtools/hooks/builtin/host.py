"""Built-in provenance: the machine and software a run used (the record's `host`)."""

from __future__ import annotations

from typing import Any

import msgspec

from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.records.host import host_info


# first, so a site's provenance hook that hangs until Ctrl-C cannot cost the record its host
@hookimpl(tryfirst=True)
def mdivicom_capture_provenance() -> dict[str, Any]:
    return msgspec.to_builtins(host_info())
