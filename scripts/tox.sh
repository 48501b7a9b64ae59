#!/usr/bin/env bash
# Run tox across every Python 3.10-3.13 that pyenv has installed. pyenv's shims
# hide all but the active version from tox, so hand tox the interpreters directly.
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
if ((${#discover[@]})); then
  exec .venv/bin/tox -p --discover "${discover[@]}" -- "$@"
fi
exec .venv/bin/tox -p -- "$@"
