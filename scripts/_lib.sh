# Helpers shared by scripts/setup-engines.sh and scripts/setup-slurm.sh.
# Source it (it runs nothing by itself) after setting:
#   LIB_TAG          the tag every line starts with, e.g. "engines" -> "[engines] ..."
#   LIB_STEP_WIDTH   the column a step's name is padded to, so the messages line up
# Both scripts print one timed line per step and, on failure, the tail of the log
# that explains it: a CI log then says where the time went and why it stopped.

T_START=$EPOCHREALTIME
T_STEP=$EPOCHREALTIME

# elapsed seconds since $1 (an $EPOCHREALTIME value), one decimal
_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME WHAT: one line per finished step, "[tag] name: what (seconds)"
step() {
  printf '[%s] %-*s %s (%ss)\n' "$LIB_TAG" "$LIB_STEP_WIDTH" "$1:" "$2" "$(_since "$T_STEP")"
  T_STEP=$EPOCHREALTIME
}

# die MESSAGE [LOG]: the message and the last lines of LOG, then exit 1
die() {
  printf '[%s] ERROR: %s\n' "$LIB_TAG" "$1" >&2
  if [[ -n ${2:-} && -f $2 ]]; then
    printf '[%s] last lines of %s:\n' "$LIB_TAG" "$2" >&2
    tail -n 40 "$2" | sed 's/^/    /' >&2
  fi
  exit 1
}

need_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (installs packages and starts daemons)"
}

# apt_install LOG PACKAGE...: install without recommends, appending to LOG.
# Package scripts may not start services (a policy-rc.d that says no, removed
# again afterwards): the scripts start the daemons themselves, with their own
# options. The package lists are refreshed only when the install fails without
# them, which saves the update on a machine whose lists are current.
apt_install() {
  local log=$1 created= status=0
  shift
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created=1
  fi
  local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
  local install=("${apt[@]}" -y --no-install-recommends
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install "$@")
  {
    echo "=== $(date -Is) apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${install[@]}" ||
      {
        echo "=== $(date -Is) apt-get update, then install again"
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update &&
          DEBIAN_FRONTEND=noninteractive "${install[@]}"
      }
  } >>"$log" 2>&1 || status=$?
  if [[ -n $created ]]; then rm -f /usr/sbin/policy-rc.d; fi
  ((status == 0)) || die "apt-get failed" "$log"
}
