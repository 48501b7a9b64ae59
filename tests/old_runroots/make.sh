#!/bin/sh
# Make tests/old_runroots/<commit>/ with an earlier release of this repository.
#
#   git worktree add --detach /tmp/old <commit>
#   python3 -m venv /tmp/old-venv
#   /tmp/old-venv/bin/pip install -e /tmp/old -e /tmp/old/backends/docker tests/old_runroots/labkit
#   sh tests/old_runroots/make.sh /tmp/old-venv/bin/mdivicom /tmp/old <commit>
#
# Every run needs Docker and the test image (scripts/setup-engines.sh). Absolute
# paths in what the runs wrote are replaced by {root}; the tests put them back.
set -u
MDIVICOM=$1 OLD=$2 COMMIT=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(mktemp -d /tmp/old-runroot-XXXXXX)
cd "$ROOT"
export MDIVICOM_PLUGIN_PATH="$OLD/examples/container-checksum" MDIVICOM_CONFIG_FILE="$ROOT/none.toml"
: > none.toml
for s in ses-01 ses-02; do mkdir -p "study/sessions/$s" && echo "$s notes" > "study/sessions/$s/a.txt"; done
m() { "$MDIVICOM" "$@" >/dev/null 2>&1; echo "mdivicom $* -> $?"; }
m run copy --dataset study/sessions/ses-01 --out out
m run checksum-dataset --dataset study --out out --backend docker
m run failer --dataset study --out out
m run copy --dataset study/sessions/ses-01 --out out --overwrite
"$MDIVICOM" run slow --dataset study --out out --set seconds=20 >/dev/null 2>&1 & P=$!
sleep 3; kill -TERM $P; wait $P; echo "interrupted run -> $?"
"$MDIVICOM" run slow --dataset study --out out --overwrite --isolate --set seconds=4 >/dev/null 2>&1 & P=$!
sleep 3; kill -KILL $P; wait $P; echo "killed run -> $?"; sleep 4
m run copy --dataset study --out batch --sessions 'ses-*' --jobs 1
"$MDIVICOM" run slow --dataset study --out batch --sessions 'ses-*' --jobs 1 --set seconds=3 >/dev/null 2>&1 & P=$!
sleep 5; kill -TERM $P; wait $P; echo "interrupted batch -> $?"
rm -rf "$HERE/$COMMIT" && mkdir "$HERE/$COMMIT"
cp -a out batch study "$HERE/$COMMIT/"
grep -rlF "$ROOT" "$HERE/$COMMIT" | while read -r f; do sed -i "s|$ROOT|{root}|g" "$f"; done
rm -rf "$ROOT"
