"""`mdivicom hooks list`: the hook modules, built-in and installed."""

from __future__ import annotations

import click

from mdivicomtools.cli.output import echo_json, warn


@click.group("hooks")
def hooks_group() -> None:
    """Inspect hook modules (entry-point group mdivicomtools.hooks)."""


@hooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(as_json: bool) -> None:
    """List every hook module: name, distribution, hooks it implements, status.

    Set MDIVICOM_DISABLE_HOOKS=name,... (or disable_hooks = ["name", ...] in the
    user config) to skip installed modules by name.
    """
    from mdivicomtools.hooks.manager import load_hooks

    hooks = load_hooks()
    modules = hooks.modules
    warn(hooks.warnings)  # stderr in both forms: `--json` keeps one document on stdout
    if as_json:
        echo_json(modules)
        return
    from mdivicomtools.cli.textui import table

    rows = []
    for module in modules:
        dist = module.distribution
        provider = (
            "(built-in)"
            if module.builtin
            else (f"{dist.name} {dist.version}" if dist else module.origin)
        )
        detail = ", ".join(module.hooks) if module.status == "ok" else str(module.error)
        rows.append([module.name, module.status, provider, detail])
    click.echo(table(["NAME", "STATUS", "PROVIDED BY", "HOOKS / PROBLEM"], rows))
