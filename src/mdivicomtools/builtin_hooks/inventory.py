"""Built-in output finalisation: the inventory of a successful run's outputs."""

from __future__ import annotations

from mdivicomtools.inventory import inventory
from mdivicomtools.markers import hookimpl
from mdivicomtools.run_types import RunOutcome


@hookimpl(tryfirst=True)
def mdivicom_finalize_outputs(outcome: RunOutcome) -> None:
    if outcome.status == "succeeded":
        outcome.outputs = inventory(outcome.staging_dir)
