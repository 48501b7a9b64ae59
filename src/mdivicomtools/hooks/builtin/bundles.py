"""Built-in output finalisation: find and validate result-bundle sidecars.

Every `resultbundle.json` a successful run wrote is validated and listed in the
record's `resultbundles`. An invalid sidecar is a warning (the run's outputs are
still worth keeping) unless the run asked for strict bundles, which fails it
before its output is promoted.
"""

from __future__ import annotations

from mdivicomtools.bundles.resultbundle import (
    Placement,
    Readable,
    find_sidecars,
    validate_file,
)
from mdivicomtools.hooks.markers import hookimpl
from mdivicomtools.model.run import BundleSummary, RunOutcome, RunRequest


@hookimpl
def mdivicom_finalize_outputs(request: RunRequest, outcome: RunOutcome) -> None:
    if outcome.status != "succeeded":
        return
    invalid = []
    # what the plugin could read itself (its output, the dataset, named mounts): a
    # detached sidecar's payload in the dataset has the verdict `bundles validate` gives
    readable = Readable.of_run(request, outcome.staging_dir)
    # judged from <out>/<id>/, where bundles validate and the next plugin will see it
    placed = Placement(staged=outcome.staging_dir, final=request.out_dir)
    for sidecar in find_sidecars(outcome.staging_dir):
        report = validate_file(sidecar, confine=readable, placed=placed)
        relative = sidecar.relative_to(outcome.staging_dir).as_posix()
        outcome.resultbundles.append(
            BundleSummary(
                path=relative,
                type=report.resultbundle_type,
                schema_version=report.schema_version,
                valid=report.valid,
                problems=[p.describe(relative) for p in report.problems],
            )
        )
        if not report.valid:
            invalid.append(relative)
            outcome.warnings.append(
                f"result bundle {relative} is invalid ({len(report.problems)} problem(s)); "
                f"see the record's resultbundles or `mdivicom bundles validate`"
            )
    if invalid and request.strict_bundles:
        outcome.fail(
            "InvalidResultBundle",
            "invalid result bundle(s) with --strict-bundles: " + ", ".join(invalid),
        )
