"""The result bundles a run's dataset holds: what a chained run consumed, for its record.

`docs/resultbundles.md` promises that a chain can be traced back through the
records. The consumer's record names the producer's output folder as its
dataset, but that folder and its sidecar are replaced when the producer runs
again; only a copy of the sidecar's identity taken when the consumer started
keeps naming the run it read. Only the envelope is read, never the payload:
this is provenance, not validation (`bundles validate` does that).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mdivicomtools.bundles.resultbundle import SIDECAR_NAME
from mdivicomtools.common.safefs import read_within
from mdivicomtools.model.run import InputBundle


def input_bundles(
    dataset_dir: Path, paths: Iterable[str], *, above: Path | None = None
) -> list[InputBundle]:
    """An `InputBundle` for each sidecar among `paths` (relative to `dataset_dir`).

    With `above` (the other plugin's output folder a chained dataset lies in),
    the sidecars in the folders from the dataset's parent up to it follow, as
    `../resultbundle.json` and so on: a batch over the sessions of a plugin's
    openSIDS view reads `dataset/sessions/ses-01/`, and the bundle it consumed
    is the view's, two folders up.

    A sidecar that is a symlink (a datalad or git-annex dataset) is read at its
    target when that lies inside the dataset (or `above`); one that cannot be
    read or parsed is still listed, with what is known: its path.
    """
    # the name after the last `/`: a PurePosixPath per file cost a run on a dataset of
    # 100,000 files most of a second, to find a sidecar or two
    wanted = [(rel, dataset_dir) for rel in paths if rel.rpartition("/")[2] == SIDECAR_NAME]
    if above is not None:
        wanted += [(rel, above) for rel in _sidecars_above(dataset_dir, above)]
    found = []
    for rel, within in wanted:
        try:
            raw = read_within(within, dataset_dir / rel)
        except OSError:
            found.append(InputBundle(path=rel, type=None, schema_version=None))
            continue
        found.append(_described(rel, raw))
    return found


def _sidecars_above(dataset_dir: Path, top: Path) -> list[str]:
    """`../resultbundle.json`, ... for each folder from the dataset's parent up to `top`."""
    real, last = Path(os.path.realpath(dataset_dir)), Path(os.path.realpath(top))
    if real == last or last not in real.parents:
        return []
    found = []
    for folder in real.parents:
        if os.path.lexists(folder / SIDECAR_NAME):
            found.append(os.path.relpath(folder / SIDECAR_NAME, real))
        if folder == last:
            break
    return found


def _described(rel: str, raw: bytes) -> InputBundle:
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        data = None
    envelope: dict[str, Any] = data if isinstance(data, dict) else {}
    producer = envelope.get("producer")
    producer = producer if isinstance(producer, dict) else {}
    return InputBundle(
        path=rel,
        type=_text(envelope.get("resultbundle_type")),
        schema_version=_text(envelope.get("schema_version")),
        producer=_text(producer.get("tool_ref")),
        producer_run_id=_text(producer.get("pipeline_run_id")),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
