#!/usr/bin/env bash
# The main job: install mdivicomtools and the sync-audio example plugin into a
# virtual environment of its own (.demo/venv, apart from the test .venv),
# generate a small synthetic openSIDS study (cameras that started up to 5 s
# apart, different gains and sample rates, noise at 10 dB SNR), sync every
# session with `mdivicom run --sessions`, and print the recovered offsets next
# to the true ones, the output folder and the run records.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEMO=.demo
[[ -x $DEMO/venv/bin/python ]] || "$PYTHON" -m venv "$DEMO/venv"
echo "[demo] installing mdivicomtools and examples/sync-audio into $DEMO/venv" >&2
"$DEMO/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  . ./examples/sync-audio
MDIVICOM=$DEMO/venv/bin/mdivicom

echo "[demo] generating a sample study in $DEMO/study" >&2
rm -rf "$DEMO/study" "$DEMO/results"
"$DEMO/venv/bin/python" -m mdivicom_sync_audio.sample "$DEMO/study" --sessions 3 --seed 11

echo "[demo] mdivicom run sync-audio over every session" >&2
"$MDIVICOM" run sync-audio --dataset "$DEMO/study" --out "$DEMO/results" --sessions 'ses-*'

echo >&2
echo "[demo] recovered versus true offsets (t_reference = t_stream + offset_s)" >&2
"$DEMO/venv/bin/python" - "$DEMO/study" "$DEMO/results" <<'PY'
import json, pathlib, sys
study, results = map(pathlib.Path, sys.argv[1:])
truth = json.loads((study / "sample_truth.json").read_text())
print(f"{'SESSION':8} {'STREAM':9} {'TRUE s':>10} {'FOUND s':>10} {'ERROR ms':>9} {'CONF':>7}")
for session, info in truth.items():
    maps = results / session / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
    for stream, true in info["offsets_s"].items():
        found = json.loads((maps / f"{stream}_timebase_map.json").read_text())
        error = (found["offset_s"] - true) * 1000
        conf = "ref" if found["confidence"] is None else f"{found['confidence']:.0f}"
        print(f"{session:8} {stream:9} {true:10.4f} {found['offset_s']:10.4f} {error:9.3f} {conf:>7}")
    records = sorted((results / session / "_runs").glob("*.json"))
    print(f"  outputs: {results / session / 'sync-audio'}/   record: {records[-1]}")
PY
