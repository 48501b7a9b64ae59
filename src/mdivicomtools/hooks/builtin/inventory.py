"""Built-in output finalisation: the inventory of a successful run's outputs."""

from __future__ import annotations

from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.model.run import RunOutcome
from mdivicomtools.records.inventory import inventory


@hookimpl(tryfirst=True)
def mdivicom_finalize_outputs(outcome: RunOutcome) -> None:
    if outcome.status == "succeeded":
        outcome.outputs = inventory(outcome.staging_dir)
