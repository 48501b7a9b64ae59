"""Built-in output finalisation: check and list a successful run's outputs.

Runs first: an output folder holding a FIFO, a socket, a device node, a
setuid/setgid file or a symlink leaving the folder fails the run here, before
anything reads a file in it and before promotion, and the error names every
such path. (The runner lists the output again after the last finalisation
hook if one of them changed it.)
"""

from __future__ import annotations

from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.model.run import RunOutcome
from mdivicomtools.records.inventory import list_outputs


@hookimpl(tryfirst=True)
def mdivicom_finalize_outputs(outcome: RunOutcome) -> None:
    if outcome.status == "succeeded":
        list_outputs(outcome)
