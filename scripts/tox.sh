#!/usr/bin/env bash
# Run tox across every Python 3.10-3.13 that pyenv has installed. pyenv's shims
# hide all but the active version from tox, so hand tox the interpreters directly.
#
# Like scripts/test.sh, the environments run side by side except for the tests
# marked `serial` (they share the one-node Slurm and the engines' leftovers with
# any run at the same time), which a second, sequential pass runs afterwards.
# Extra arguments go to pytest in both passes.
set -euo pipefail
cd "$(dirname "$0")/.."
discover=()
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for version in $(pyenv versions --bare | grep -E '^3\.1[0-3]\.[0-9]+$' | sort -V); do
    discover+=("$root/versions/$version/bin/python3")
  done
fi
[[ -x .venv/bin/tox ]] || bash scripts/test.sh --co -q >/dev/null
tox=(.venv/bin/tox)
if ((${#discover[@]})); then tox+=(--discover "${discover[@]}"); fi
status=0
"${tox[@]}" -p -- -m "not serial" "$@" || status=$?
# the second pass only when the arguments select a serial test (pytest would
# exit 5, "no tests collected", in every environment otherwise)
selected=0
.venv/bin/python -m pytest --co -q -m serial "$@" >/dev/null 2>&1 || selected=$?
if ((selected == 0)); then
  "${tox[@]}" -e py310,py311,py312,py313 -- -m serial "$@" || status=$?
elif ((selected != 5)); then
  status=$selected
fi
exit "$status"
