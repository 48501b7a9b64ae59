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
#                           lint and docs run once, with the first, and the tests
#                           marked `heavy` once, with the last
#   MDIVICOM_TEST_PARALLEL  with several Pythons: 1 (default) runs their suites at
#                           the same time, except the tests marked `serial`, which
#                           then run one Python after the other; 0 runs each whole
#                           suite in turn. Each concurrent suite's output goes to
#                           build/test-logs/pytest-<version>.log and is printed
#                           when it ends. (The Slurm tests take turns through a
#                           lock of their own, tests/engines.py slurm_lock.)
#                           Every other suite runs its test files last first
#                           (MDIVICOM_TEST_MODULE_ORDER=reversed, tests/conftest.py).
#   MDIVICOM_TEST_WORKERS   pytest-xdist processes per suite (default 2), each
#                           taking whole test files; 0 runs a suite in one process
#                           (for --pdb). The tests marked `serial` always run
#                           afterwards in one process.
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
  # pip stays in the venv (the tests install plugins with it); uv installs the
  # project: it resolves and fetches in parallel, 14 s on a new machine where
  # pip took 55-70 s, and a fraction of a second when nothing changed. Unlike
  # pip, uv writes no byte-code unless asked, and where PYTHONDONTWRITEBYTECODE
  # is set (as on these machines and in CI) no run writes it either: every
  # process the tests start (`mdivicom`, Dask workers, xdist workers) then
  # compiled all it imported, 2.7 s for `import distributed` alone
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip uv
  "$venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" \
    -e '.[dev]' -e backends/docker -e backends/podman
  # nor does an editable install compile the project's own sources: without
  # their byte-code every `mdivicom` start compiles them again (30-55 ms). -q
  # prints only what does not compile, which must show: a source one version
  # cannot compile failed the set-up with no word of which file or why
  "$venv/bin/python" -m compileall -q src backends/docker/src backends/podman/src
}

lint_and_docs() {
  local venv=$1
  echo "[test] ruff"
  "$venv/bin/ruff" check .
  "$venv/bin/ruff" format --check .
  echo "[test] mypy"
  "$venv/bin/mypy"
  echo "[test] mkdocs build --strict"
  # not --quiet: it hides the warnings from --strict too, and a broken link passed
  NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict 2>&1 | { grep -v '^INFO' || true; }
}

# Half of a suite waits on the engines, Dask and Slurm (CPU/wall 0.2-0.5 in the
# container, fault and batch files), so a suite is spread over pytest-xdist
# workers, whole files each (a file's module fixtures are made once), and one
# worker's waits meet another's number crunching.
workers=${MDIVICOM_TEST_WORKERS:-2}
spread=(-n "$workers" --dist loadfile)

# the exit code of two parts of one suite: "no tests collected" (5) only when
# neither part selected a test, else the first failure
combined() {
  if (($1 == 5 && $2 == 5)); then echo 5
  elif (($1 != 0 && $1 != 5)); then echo "$1"
  elif (($2 != 0 && $2 != 5)); then echo "$2"
  else echo 0
  fi
}

if [[ -z ${MDIVICOM_TEST_PYTHONS:-} ]]; then
  prepare "${PYTHON:-python3}" .venv
  lint_and_docs .venv
  if ((workers == 0)); then
    echo "[test] pytest"
    exec .venv/bin/python -m pytest "$@"
  fi
  echo "[test] pytest (not serial, $workers workers)"
  spread_code=0
  .venv/bin/python -m pytest "${spread[@]}" -m "not serial" "$@" || spread_code=$?
  echo "[test] pytest (serial)"
  serial_code=0
  .venv/bin/python -m pytest -n 0 -m serial "$@" || serial_code=$?
  exit "$(combined "$spread_code" "$serial_code")"
fi

# elapsed seconds since $1 (a $SECONDS value), for the timing lines
took() { echo "$((SECONDS - $1))s"; }

versions=()
pythons=()
for version in $MDIVICOM_TEST_PYTHONS; do
  versions+=("$version")
  pythons+=("$(interpreter "$version")")
done
logs=build/test-logs
mkdir -p "$logs"
parallel=${MDIVICOM_TEST_PARALLEL:-1}
((${#versions[@]} > 1)) || parallel=0

# the venvs: pip spends much of its time waiting for the index and the disk, so
# they are prepared side by side
t=$SECONDS
if ((parallel)); then
  pids=()
  for i in "${!versions[@]}"; do
    prepare "${pythons[$i]}" ".venv-${versions[$i]}" >"$logs/prepare-${versions[$i]}.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!versions[@]}"; do
    if ! wait "${pids[$i]}"; then
      cat "$logs/prepare-${versions[$i]}.log"
      echo "[test] setting up .venv-${versions[$i]} failed" >&2
      exit 1
    fi
    grep -v '^WARNING: Location ' "$logs/prepare-${versions[$i]}.log" || true
  done
else
  for i in "${!versions[@]}"; do prepare "${pythons[$i]}" ".venv-${versions[$i]}"; done
fi
echo "[test] venvs ready ($(took "$t"))"

t=$SECONDS
lint_and_docs ".venv-${versions[0]}"
echo "[test] lint and docs done ($(took "$t"))"

status=0
# pytest in venv $1 with arguments $2...; its own cache folder, so that two suites
# never write one file. With several Pythons, a part that selects nothing (exit 5:
# `-k` named only `serial` or only `heavy` tests) is no failure.
pytest_in() {
  local code=0
  "$1/bin/python" -m pytest -o cache_dir="$1/.pytest_cache" "${@:2}" || code=$?
  ((code == 5 && ${#versions[@]} > 1)) && code=0
  return "$code"
}
# The tests marked `heavy` (numeric work whose outcome does not depend on the
# Python version, minutes of CPU in all) run on the last Python only: on a
# 2-core machine, two suites crunching them at once took a third of their CPU.
last=${versions[${#versions[@]} - 1]}
heavy_filter() { [[ $1 == "$last" ]] && echo "" || echo " and not heavy"; }
echo "[test] the tests marked heavy run on Python $last only"
if ((parallel)); then
  # Every test but the `serial` ones keeps to its own tmp_path, run id, image tag,
  # labels and process marker, so two suites can share the engines and the
  # machine (the Slurm tests take turns through a lock); the `serial` ones (a
  # planted leftover that any other container run may clear) run below, one
  # Python at a time. Every other suite runs its test files last first
  # (tests/conftest.py), so that one suite's number crunching (sync-audio)
  # meets the other's waits on the engines rather than its own crunching.
  t=$SECONDS
  pids=()
  for i in "${!versions[@]}"; do
    version=${versions[$i]}
    order=$( ((i % 2)) && echo reversed || echo forward)
    echo "[test] pytest on Python $version (not serial, files $order), output in $logs/pytest-$version.log"
    MDIVICOM_TEST_MODULE_ORDER=$order \
      pytest_in ".venv-$version" "${spread[@]}" -m "not serial$(heavy_filter "$version")" "$@" \
      >"$logs/pytest-$version.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!versions[@]}"; do
    wait "${pids[$i]}" || status=1
    echo "[test] ---- pytest on Python ${versions[$i]} (not serial) ----"
    cat "$logs/pytest-${versions[$i]}.log"
  done
  echo "[test] concurrent part done ($(took "$t"))"
  for version in "${versions[@]}"; do
    t=$SECONDS
    echo "[test] pytest on Python $version (serial)"
    pytest_in ".venv-$version" -n 0 -m serial "$@" || status=1
    echo "[test] serial part on Python $version done ($(took "$t"))"
  done
else
  for version in "${versions[@]}"; do
    t=$SECONDS
    echo "[test] pytest on Python $version (not serial, $workers workers)"
    pytest_in ".venv-$version" "${spread[@]}" -m "not serial$(heavy_filter "$version")" "$@" ||
      status=1
    echo "[test] pytest on Python $version (serial)"
    pytest_in ".venv-$version" -n 0 -m serial "$@" || status=1
    echo "[test] pytest on Python $version done ($(took "$t"))"
  done
fi
exit "$status"
