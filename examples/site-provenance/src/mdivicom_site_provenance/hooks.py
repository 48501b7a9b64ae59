"""Site-specific provenance and a site rule, as mdivicomtools hook implementations.

Configure with environment variables:
  MDIVICOM_SITE_LAB          the lab's name (default "unknown-lab")
  MDIVICOM_SITE_REQUIRE_JOB  "1" to refuse runs outside a scheduler job
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mdivicomtools import hookimpl

if TYPE_CHECKING:
    from mdivicomtools import RunOutcome, RunRequest

#: environment variables that name the current batch job, by scheduler
SCHEDULER_JOB_VARS = {
    "slurm": "SLURM_JOB_ID",
    "pbs": "PBS_JOBID",
    "lsf": "LSB_JOBID",
    "sge": "JOB_ID",
}


def current_job() -> tuple[str | None, str | None]:
    for scheduler, variable in SCHEDULER_JOB_VARS.items():
        job_id = os.environ.get(variable)
        if job_id:
            return scheduler, job_id
    return None, None


@hookimpl
def mdivicom_validate_run(request: RunRequest) -> list[str]:
    if os.environ.get("MDIVICOM_SITE_REQUIRE_JOB") == "1" and current_job()[1] is None:
        return [
            f"{request.plugin.ref}: this site runs plugins only inside a scheduler job; "
            "submit it with sbatch (or unset MDIVICOM_SITE_REQUIRE_JOB)"
        ]
    return []


@hookimpl
def mdivicom_capture_provenance(request: RunRequest, outcome: RunOutcome) -> dict[str, Any]:
    scheduler, job_id = current_job()
    return {
        "lab": os.environ.get("MDIVICOM_SITE_LAB", "unknown-lab"),
        "scheduler": scheduler,
        "job_id": job_id,
        "user": os.environ.get("USER"),
        "run_status": outcome.status,
    }
