"""Built-in provenance: the machine and software a run used (the record's `host`)."""

from __future__ import annotations

import platform
import socket
from typing import Any

from mdivicomtools._version import __version__
from mdivicomtools.markers import hookimpl


@hookimpl
def mdivicom_capture_provenance() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mdivicomtools": __version__,
    }
