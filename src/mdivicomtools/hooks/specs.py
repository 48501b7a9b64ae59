"""The hooks an extender can implement (docs/reference/hooks.md).

Hook modules register under the entry-point group `mdivicomtools.hooks`:

    [project.entry-points."mdivicomtools.hooks"]
    site-provenance = "mylab_mdivicom.hooks"

and mark their functions with `from mdivicomtools import hookimpl`. The core's
own behaviour (validation, host provenance, output inventory, the python
backend) is written as implementations of these same hooks, in
`mdivicomtools.hooks.builtin`.

Every hook is called with keyword arguments, and an implementation may accept
any subset of them. Each implementation is called on its own: one that raises is
reported by its name and never costs the run its record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdivicomtools.hooks.markers import hookspec

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mdivicomtools.execution.base import ExecutionBackend
    from mdivicomtools.model.run import RunOutcome, RunRequest


@hookspec
def mdivicom_validate_run(request: RunRequest) -> list[str] | None:
    """Check a run before anything executes; return problems as one-line strings.

    Problems from every implementation are collected and shown together, and the
    run stops with exit status 2 before the plugin starts. Return an empty list
    or None when all is well. Use it for site rules that must hold before
    compute is spent, such as a consent record in the dataset or dataset naming.
    (A rule asking for a config key fits only plugins that take that key: a
    ``config_schema`` with ``additionalProperties: false`` refuses it as unknown,
    so the user cannot follow the rule.)

    Example::

        @hookimpl
        def mdivicom_validate_run(request):
            if not (request.dataset_dir / "consent.json").is_file():
                return [f"{request.dataset_dir} has no consent.json; this site runs "
                        "plugins only on datasets with a signed consent record"]
            return []
    """


@hookspec
def mdivicom_capture_provenance(request: RunRequest, outcome: RunOutcome) -> dict[str, Any] | None:
    """Return JSON-safe facts to keep in the run record, or None.

    Called after every run, whatever its status. The returned dict is stored in
    the record under ``extensions[<hook module name>]``. A dict that holds
    anything but JSON values (a datetime, a Path, a tuple) is not kept, none of
    it, and the record's ``hook_errors`` names the first such value: convert
    them first (``when.isoformat()``, ``str(path)``).

    Example::

        import os

        @hookimpl
        def mdivicom_capture_provenance(request, outcome):
            return {"lab": "interaction-lab",
                    "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    """


@hookspec
def mdivicom_finalize_outputs(request: RunRequest, outcome: RunOutcome) -> None:
    """Inspect or annotate the outputs after the plugin finished, on success and failure.

    ``outcome.staging_dir`` holds what the plugin wrote (it becomes
    ``request.out_dir`` only if the run succeeds). An implementation may write
    or remove files there (the runner then lists the output again, so the
    record lists what is promoted; a file it adds is noted in the run log, a
    file of the plugin's it changes or removes is a warning naming its module),
    append strings to ``outcome.warnings``, or
    call ``outcome.fail(type, message)`` to stop a bad output from being
    promoted; other changes are undone and reported. The built-in
    implementation makes the output inventory (path, size, sha256) first.

    Example::

        @hookimpl
        def mdivicom_finalize_outputs(request, outcome):
            if outcome.status == "succeeded" and not any(outcome.staging_dir.iterdir()):
                outcome.warnings.append("the plugin wrote no files")
    """


@hookspec
def mdivicom_execution_backends() -> Iterable[ExecutionBackend] | None:
    """Return the execution backends this module provides.

    A backend runs a plugin of a given kind (see ``ExecutionBackend`` in
    mdivicomtools.execution.base) and is chosen with ``mdivicom run --backend NAME``.
    The python backend is built in; the docker and podman backends come from
    their own distributions through this hook, as a site's own backend would.

    The example is a complete backend: it calls python plugins in the runner's
    own process, and ``--backend inline`` picks it.

    Example::

        import importlib

        from mdivicomtools.execution.base import Availability

        class InlineBackend:
            name = "inline"
            kinds = frozenset({"python"})

            def availability(self):
                return Availability(available=True, engine="inline 1")

            def execute(self, request, outcome, log):
                module, _, function = request.spec.entry.callable.partition(":")
                run = getattr(importlib.import_module(module), function)
                try:
                    outcome.result = run(str(request.dataset_dir), str(outcome.staging_dir),
                                         request.config, work_dir=str(request.work_dir),
                                         dry_run=request.dry_run)
                except Exception as exc:
                    outcome.fail(type(exc).__name__, str(exc), 1)
                else:
                    outcome.status, outcome.exit_code = "succeeded", 0

        @hookimpl
        def mdivicom_execution_backends():
            return [InlineBackend()]
    """
