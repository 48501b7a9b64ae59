"""Built-in output finalisation: check and list a successful run's outputs.

Runs first: an output folder holding a FIFO, a socket, a device node, a
setuid/setgid file or a symlink leaving the folder fails the run here, before
anything reads a file in it and before promotion, and the error names every
such path.
"""

from __future__ import annotations

from mdivicomtools.common.safefs import scan
from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.model.run import RunOutcome
from mdivicomtools.records.inventory import inventory_of, unsafe_entries


@hookimpl(tryfirst=True)
def mdivicom_finalize_outputs(outcome: RunOutcome) -> None:
    if outcome.status != "succeeded":
        return
    entries = scan(outcome.staging_dir)
    refused = unsafe_entries(entries)
    if refused:
        outcome.fail(
            "UnsafeOutput",
            "the output holds entries that are never promoted: "
            + ", ".join(refused[:20])
            + (f" and {len(refused) - 20} more" if len(refused) > 20 else ""),
        )
        return
    outcome.outputs = inventory_of(outcome.staging_dir, entries)
