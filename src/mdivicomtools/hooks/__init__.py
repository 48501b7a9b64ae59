"""Extension points (pluggy): the hook specs, the manager that loads hook modules,
and the core's own behaviour written as hook implementations.

`markers` (hookimpl, hookspec; costs only pluggy to import), `specs` (every
hook with an example), `manager` (loading, isolated calls, the backend
registry), `builtin/` (validation, host, inventory, result bundles, the python
backend). May import `common`, `model`, `records`, `bundles` and `execution`;
never the runner, which calls the hooks.
"""
