#!/usr/bin/env bash
# The main job: install mdivicomtools and the example plugin package into a
# virtual environment of its own (.demo/venv, apart from the test .venv), make a
# small sample dataset, run the plugin on it, and show where the outputs and the
# run record are.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEMO=.demo
[[ -x $DEMO/venv/bin/python ]] || "$PYTHON" -m venv "$DEMO/venv"
echo "[demo] installing mdivicomtools and examples/minimal-plugin into $DEMO/venv" >&2
"$DEMO/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  . ./examples/minimal-plugin
MDIVICOM=$DEMO/venv/bin/mdivicom

echo "[demo] writing a sample dataset to $DEMO/dataset" >&2
rm -rf "$DEMO/dataset"
"$DEMO/venv/bin/python" - "$DEMO/dataset" <<'PY'
import math, pathlib, struct, sys, wave
root = pathlib.Path(sys.argv[1])
for session in ("01", "02"):
    for stream in ("cam1", "cam2"):
        folder = root / "sessions" / f"ses-{session}" / "raw" / "audio" / f"str-{stream}"
        folder.mkdir(parents=True)
        with wave.open(str(folder / f"str-{stream}.wav"), "wb") as out:
            out.setnchannels(1); out.setsampwidth(2); out.setframerate(16000)
            tone = (int(8000 * math.sin(2 * math.pi * 440 * i / 16000)) for i in range(16000))
            out.writeframes(b"".join(struct.pack("<h", s) for s in tone))
PY

echo "[demo] mdivicom plugins list" >&2
"$MDIVICOM" plugins list
echo "[demo] mdivicom run hello (counting the WAV files)" >&2
"$MDIVICOM" run hello --dataset "$DEMO/dataset" --out "$DEMO/results" --overwrite \
  --set 'pattern=*.wav'
echo "[demo] the plugin's output, $DEMO/results/hello/summary.json:" >&2
cat "$DEMO/results/hello/summary.json"
