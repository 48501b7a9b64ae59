"""What the container tests share: a one-line container plugin, running it through
the real CLI on one engine, and asking that engine what a run left behind.

Kept apart from the test modules so that each of them can import it without
importing (and so collecting) another test module.
"""

from __future__ import annotations

import json
import subprocess

from engines import TEST_IMAGE, engine_cli
from pluginsite import PluginSite, container_manifest


def container_plugin(site: PluginSite, plugin_id: str, script: str, **container: object) -> None:
    """A manifest plugin running `sh -c script` in the test image (or `image=`), never pulled."""
    spec = {"image": TEST_IMAGE, "command": ["sh", "-c", script], "pull": "never", **container}
    site.manifest(f"{plugin_id}.json", container_manifest(plugin_id, spec))


def run_on(
    site: PluginSite,
    engine: str,
    plugin_id: str,
    dataset: object,
    out: object,
    *options: str,
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    """`mdivicom run PLUGIN --dataset D --out O --backend ENGINE OPTIONS --json`: the
    finished process and the record it printed (None when it printed none, as for exit 2)."""
    result = site.cli(
        "run",
        plugin_id,
        "--dataset",
        str(dataset),
        "--out",
        str(out),
        "--backend",
        engine,
        *options,
        "--json",
        **env,
    )
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def leftover_containers(engine: str, run_id: str | None = None) -> list[str]:
    """Containers of this run (labelled with its run id) that the engine still has."""
    return _labelled(engine, "mdivicomtools.run_id" + (f"={run_id}" if run_id else ""))


def plugin_containers(engine: str, plugin_ref: str) -> list[str]:
    """Containers of any run of `plugin_ref` (labelled with it) that the engine has."""
    return _labelled(engine, f"mdivicomtools.plugin={plugin_ref}")


def _labelled(engine: str, label: str) -> list[str]:
    result = subprocess.run(
        [*engine_cli(engine), "ps", "-a", "-q", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.split()


def image_inspect(engine: str) -> dict:
    result = subprocess.run(
        [*engine_cli(engine), "image", "inspect", TEST_IMAGE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)[0]
