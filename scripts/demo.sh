#!/usr/bin/env bash
# The main job: install mdivicomtools and the example plugin package into a
# fresh virtual environment of its own (.demo/venv, apart from the test .venv),
# and show what mdivicomtools discovers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DEMO=.demo
[[ -x $DEMO/venv/bin/python ]] || "$PYTHON" -m venv "$DEMO/venv"
echo "[demo] installing mdivicomtools and examples/minimal-plugin into $DEMO/venv" >&2
"$DEMO/venv/bin/python" -m pip install --quiet --disable-pip-version-check . ./examples/minimal-plugin
MDIVICOM=$DEMO/venv/bin/mdivicom

echo "[demo] mdivicom plugins list" >&2
"$MDIVICOM" plugins list
echo >&2
echo "[demo] mdivicom plugins info hello" >&2
"$MDIVICOM" plugins info hello
