"""What a run of a plugin would be now, without running it: for `--resume`.

A session may be skipped only if its last run had the same plugin version,
config and (for a container plugin) the same image as a run now would have;
this builds one Prepared to answer all three.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mdivicomtools.model.options import RunOptions
from mdivicomtools.model.run import PluginInfo
from mdivicomtools.runner.prepare import Prepared


class RunFacts(msgspec.Struct, kw_only=True, frozen=True):
    plugin: PluginInfo
    config: dict[str, Any]
    config_sha256: str
    #: the image id a container plugin would run now (None: python, or not known)
    image_id: str | None
    #: whether a run now would hash its dataset (--hash-dataset, or the user config):
    #: the plan checks with it a session it walked for --resume, as the run would
    hash_dataset: bool = False


def run_facts(ref: str, options: RunOptions) -> RunFacts:
    with Prepared(ref, options, None) as prepared:
        return RunFacts(
            plugin=prepared.plugin,
            config=prepared.config,
            config_sha256=prepared.config_sha256,
            image_id=prepared.image_id(),
            hash_dataset=prepared.hash_dataset,
        )
