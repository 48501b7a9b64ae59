#!/usr/bin/env bash
# The project's test command: set up a virtual environment (first run only),
# install the project, its backends and dev tools into it, then lint, build the
# docs strictly and run the test suite. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -k discovery -x`.
#
# Environment:
#   PYTHON                  the interpreter for .venv (default python3)
#   MDIVICOM_TEST_PYTHONS   e.g. "3.10 3.13": run the suite once per Python version,
#                           each in .venv-<version> (CI runs the oldest and newest);
#                           lint and docs run once, with the first
set -euo pipefail
cd "$(dirname "$0")/.."

# the interpreter for a version: pyenv's install of it, else python<version> on PATH
interpreter() {
  local version=$1 root candidate
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for candidate in $(ls -d "$root"/versions/"$version".* 2>/dev/null | sort -V -r); do
      [[ -x $candidate/bin/python3 ]] && { echo "$candidate/bin/python3"; return; }
    done
  fi
  command -v "python$version" || { echo "[test] no Python $version found" >&2; return 1; }
}

# set up one venv: create it once; install (byte-compiled) every time, quietly
prepare() {
  local python=$1 venv=$2
  if [[ ! -x $venv/bin/python ]]; then
    echo "[test] creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
  fi
  echo "[test] installing mdivicomtools, its docker and podman backends and dev tools into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  # the backends depend on mdivicomtools, so they go in once it is there
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e backends/docker -e backends/podman
  # an editable install leaves the sources without byte-code until some run can
  # write it; without it every `mdivicom` start compiles them again (30-55 ms)
  "$venv/bin/python" -m compileall -q src backends/docker/src backends/podman/src >/dev/null
}

lint_and_docs() {
  local venv=$1
  echo "[test] ruff"
  "$venv/bin/ruff" check .
  "$venv/bin/ruff" format --check .
  echo "[test] mkdocs build --strict"
  NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet
}

if [[ -z ${MDIVICOM_TEST_PYTHONS:-} ]]; then
  prepare "${PYTHON:-python3}" .venv
  lint_and_docs .venv
  echo "[test] pytest"
  exec .venv/bin/python -m pytest "$@"
fi

first=1
status=0
for version in $MDIVICOM_TEST_PYTHONS; do
  python=$(interpreter "$version")
  prepare "$python" ".venv-$version"
  if ((first)); then
    lint_and_docs ".venv-$version"
    first=0
  fi
  echo "[test] pytest on Python $version"
  ".venv-$version/bin/python" -m pytest "$@" || status=$?
done
exit "$status"
