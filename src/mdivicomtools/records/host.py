"""The machine and software a run used: the record's `host`."""

from __future__ import annotations

import os

from mdivicomtools._version import __version__
from mdivicomtools.common.platform import python_version
from mdivicomtools.model.run import HostInfo


def host_info() -> HostInfo:
    # os.uname() rather than the platform module: importing platform and calling
    # platform.platform() cost 15 ms, a tenth of a no-op run
    uname = os.uname()
    return HostInfo(
        hostname=uname.nodename,
        platform=f"{uname.sysname}-{uname.release}-{uname.machine}",
        python=python_version(),
        mdivicomtools=__version__,
        slurm_job_id=os.environ.get("SLURM_JOB_ID") or None,
    )
