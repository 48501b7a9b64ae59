#!/usr/bin/env bash
# The project's test command: set up .venv (first run only), install the
# project and its development tools into it, then lint and run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k discovery -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "[test] creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
echo "[test] installing mdivicomtools, its docker and podman backends and dev tools into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
  -e backends/docker -e backends/podman
# an editable install leaves the sources without byte-code until some run can
# write it; without it every `mdivicom` start compiles them again (30-55 ms)
.venv/bin/python -m compileall -q src backends/docker/src backends/podman/src >/dev/null

echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
