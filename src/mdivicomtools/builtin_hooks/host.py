"""Built-in provenance: the machine and software a run used (the record's `host`)."""

from __future__ import annotations

import os
import sys
from typing import Any

from mdivicomtools._version import __version__
from mdivicomtools.markers import hookimpl


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


@hookimpl
def mdivicom_capture_provenance() -> dict[str, Any]:
    # os.uname() rather than the platform module: importing platform and calling
    # platform.platform() cost 15 ms, a tenth of a no-op run
    uname = os.uname()
    return {
        "hostname": uname.nodename,
        "platform": f"{uname.sysname}-{uname.release}-{uname.machine}",
        "python": python_version(),
        "mdivicomtools": __version__,
    }
