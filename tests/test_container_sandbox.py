"""What a container plugin's manifest cannot open up, on the real Docker Engine and Podman.

The dataset is mounted read-only. These tests check that a manifest cannot
undo that (a capability that remounts it, a named mount over it, an
environment entry that replaces a runner variable), and that a change to the
dataset made some other way during a container run still fails the run, as it
does for a python plugin.
"""

from __future__ import annotations

import json

import pytest

from containerkit import container_plugin, plugin_containers, run_on

pytestmark = pytest.mark.engines

#: what a container given SYS_ADMIN could do before: make the dataset writable and write
REMOUNT = (
    "mount -o remount,rw,bind /mdivicom/dataset && echo changed > /mdivicom/dataset/a.txt; "
    "echo ran > {out_dir}/ran"
)


@pytest.mark.parametrize("capability", ["SYS_ADMIN", "cap_dac_read_search", "ALL"])
def test_a_capability_that_defeats_the_sandbox_is_refused_before_anything_runs(
    site, dataset, tmp_path, engine, capability
):
    container_plugin(site, "remount", REMOUNT, capabilities=[capability])
    out = tmp_path / "out"
    result, record = run_on(site, engine, "remount", dataset, out)
    assert result.returncode == 2, result.stderr
    assert record["error"]["type"] == "PluginBroken"
    assert f"container.capabilities: {capability!r} is refused" in record["error"]["message"]
    assert (dataset / "a.txt").read_text() == "one\ntwo\n"
    assert not (out / "remount").exists()
    assert plugin_containers(engine, "lab/remount") == []
    listed = json.loads(site.cli("plugins", "list", "--json").stdout)
    [item] = [i for i in listed if i["ref"] == "lab/remount"]
    assert item["status"] == "broken" and "container.capabilities" in item["error"]
