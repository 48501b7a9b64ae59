#!/usr/bin/env bash
# The main job: install mdivicomtools and the sync-audio example plugin into a
# virtual environment of its own (.demo/venv, apart from the test .venv),
# generate a small synthetic openSIDS study (cameras that started up to 5 s
# apart, different gains and sample rates, noise at 10 dB SNR; one dry session,
# one reverberant room whose last camera split its recording into two chapter
# files, and one room whose second camera is an MP4 file with AAC audio), sync
# every session with `mdivicom run --sessions`, and print the
# recovered offsets next to the true (acoustic) ones with each one's error
# bound, the output folder, the picture and the run records.
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
"$DEMO/venv/bin/python" -m mdivicom_sync_audio.sample "$DEMO/study" --sessions 3 --seed 11 \
  --scenes dry,room+chapters,room+mp4

echo "[demo] mdivicom run sync-audio over every session" >&2
"$MDIVICOM" run sync-audio --dataset "$DEMO/study" --out "$DEMO/results" --sessions 'ses-*'

echo >&2
echo "[demo] recovered versus true offsets (t_reference = t_stream + offset_s)" >&2
"$DEMO/venv/bin/python" - "$DEMO/study" "$DEMO/results" <<'PY'
import json, pathlib, sys
study, results = map(pathlib.Path, sys.argv[1:])
truth = json.loads((study / "sample_truth.json").read_text())
print(f"{'SESSION':8} {'SCENE':13} {'STREAM':9} {'FILE':12} {'TRUE s':>10} {'FOUND s':>10} "
      f"{'ERROR ms':>9} {'BOUND ms':>9} STATUS")
for session, info in truth.items():
    maps = results / session / "sync-audio" / "dataset" / "derived" / "sync" / "timebase_maps"
    for stream, true in info["offsets_s"].items():
        found = json.loads((maps / f"{stream}_timebase_map.json").read_text())
        # a stream of several files (chapters): one row per file, each in its own time
        trues = [f["offset_s"] for f in info.get("files", {}).get(stream, [])] or [true]
        for entry, true in zip(found.get("files", [found]), trues, strict=True):
            name = entry["audio"]["file"]
            if entry["offset_s"] is None:
                print(f"{session:8} {info['scene']:13} {stream:9} {name:12} {true:10.4f} "
                      f"{'-':>10} {'-':>9} {'-':>9} {entry['status']}: {entry['error']}")
                continue
            error = (entry["offset_s"] - true) * 1000
            bound = "ref" if entry["error_bound_ms"] is None else f"{entry['error_bound_ms']:.3f}"
            print(f"{session:8} {info['scene']:13} {stream:9} {name:12} {true:10.4f} "
                  f"{entry['offset_s']:10.4f} {error:9.3f} {bound:>9} {entry['status']}")
    records = sorted((results / session / "_runs").glob("*.json"))
    picture = results / session / "sync-audio" / "dataset" / "derived" / "sync" / "reports"
    print(f"  outputs: {results / session / 'sync-audio'}/   record: {records[-1]}")
    print(f"  picture: {picture / 'sync_audio.png'}")
    for warning in json.loads(records[-1].read_text())["result"].get("warnings", []):
        print(f"  warning: {warning}")
PY
