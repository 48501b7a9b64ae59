#!/usr/bin/env bash
# Install and start a single-node Slurm cluster for the `--executor slurm` tests.
#
#   - Debian's slurmctld, slurmd, slurm-client and munge, installed with apt
#   - /etc/slurm/slurm.conf: one node (this machine, on 127.0.0.1) in one
#     default partition "debug"
#   - munged, slurmctld and slurmd started by hand with setsid (CI machines have
#     no systemd, and package scripts may not start services)
#
# Idempotent: when `sinfo` already reports the node idle it only runs the smoke
# test and returns in about a second. Run it as root, don't source it. Daemon
# logs go to ${MDIVICOM_CI_LOGS:-/tmp/mdivicom-ci}/slurm/. The daemons are left
# running; everything listens on this machine only (NodeAddr 127.0.0.1).
#
# Environment:
#   MDIVICOM_CI_LOGS       log folder (default /tmp/mdivicom-ci)
#   MDIVICOM_SLURM_WAIT    seconds to wait for the node to become idle (default 60)
set -euo pipefail

LOG_DIR=${MDIVICOM_CI_LOGS:-/tmp/mdivicom-ci}/slurm
WAIT_S=${MDIVICOM_SLURM_WAIT:-60}
CONF=/etc/slurm/slurm.conf
PARTITION=debug
APT_PACKAGES=(slurmctld slurmd slurm-client munge)

LIB_TAG=slurm
LIB_STEP_WIDTH=12
# shellcheck source=scripts/_lib.sh
source "$(dirname "$0")/_lib.sh"

need_root
mkdir -p "$LOG_DIR"

node_state() { timeout 10 sinfo -h -N -o %T 2>/dev/null | head -n1; }
smoke() { timeout 60 srun -n1 -p "$PARTITION" true >/dev/null 2>&1; }

# ------------------------------------------------------------- 0. already up?
if command -v sinfo >/dev/null && [[ $(node_state) == idle || $(node_state) == mixed ]]; then
  smoke || die "sinfo says the node is up, but 'srun -n1 true' failed"
  step ready "node already idle, srun smoke test passed"
  echo "[slurm] ready in $(_since "$T_START")s"
  exit 0
fi

# ---------------------------------------------------------------- 1. packages
have_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null
}
if have_packages; then
  step packages "already installed"
else
  APT_LOG=$LOG_DIR/apt.log
  apt_install "$APT_LOG" "${APT_PACKAGES[@]}"
  have_packages || die "packages installed but slurmctld/slurmd/sbatch/munged still missing" "$APT_LOG"
  step packages "installed ${APT_PACKAGES[*]} (log: $APT_LOG)"
fi

# ------------------------------------------------------------------- 2. munge
if [[ ! -s /etc/munge/munge.key ]]; then
  mungekey --create >/dev/null 2>&1 || die "mungekey --create failed"
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if timeout 5 munge -n </dev/null >/dev/null 2>&1; then
  step munge "already running"
else
  rm -f /run/munge/munged.pid
  setsid runuser -u munge -- munged --force </dev/null >>"$LOG_DIR/munged.log" 2>&1 &
  for _ in $(seq 50); do timeout 5 munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
  timeout 5 munge -n </dev/null >/dev/null 2>&1 || die "munged did not start" "$LOG_DIR/munged.log"
  step munge "started"
fi

# -------------------------------------------------------------- 3. slurm.conf
# the node line as slurmd measures it, RealMemory rounded down (a value above
# what slurmd measures drains the node)
node_line() {
  slurmd -C | head -n1 | awk '{
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^RealMemory=/) { split($i, kv, "="); m = int(kv[2] * 0.9); $i = "RealMemory=" m }
    }
    print $0 " NodeAddr=127.0.0.1 State=UNKNOWN"
  }'
}
NODE_LINE=$(node_line)
NODE_NAME=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$NODE_LINE")
[[ -n $NODE_NAME ]] || die "slurmd -C printed no NodeName"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
NEW_CONF=$(cat <<EOF
# Written by mdivicomtools scripts/setup-slurm.sh: a single-node cluster for tests.
ClusterName=mdivicom
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MailProg=/bin/true
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
JobCompType=jobcomp/none
MinJobAge=300
$NODE_LINE
PartitionName=$PARTITION Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF
)
CONF_CHANGED=
if [[ -f $CONF ]] && [[ $(cat "$CONF") == "$NEW_CONF" ]]; then
  step slurm.conf "unchanged"
else
  [[ -f $CONF ]] && cp -p "$CONF" "$CONF.bak-$(date +%Y%m%d%H%M%S)"
  printf '%s\n' "$NEW_CONF" >"$CONF"
  CONF_CHANGED=1
  step slurm.conf "wrote $CONF ($NODE_NAME)"
fi

# ----------------------------------------------------------- 4. the daemons
pid_of() { pgrep -x "$1" | head -n1 || true; }
if [[ -n $CONF_CHANGED ]]; then
  for daemon in slurmd slurmctld; do
    pid=$(pid_of $daemon)
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  for _ in $(seq 50); do [[ -z $(pid_of slurmd)$(pid_of slurmctld) ]] && break; sleep 0.1; done
fi
for daemon in slurmctld slurmd; do
  if [[ -n $(pid_of $daemon) ]]; then
    continue
  fi
  rm -f "/run/$daemon.pid"
  setsid $daemon -D </dev/null >>"$LOG_DIR/$daemon.out" 2>&1 &
  if [[ $daemon == slurmctld ]]; then
    for _ in $(seq 100); do timeout 5 scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
done
step daemons "slurmctld pid $(pid_of slurmctld), slurmd pid $(pid_of slurmd) (logs: $LOG_DIR)"

# -------------------------------------------------------- 5. wait until idle
deadline=$((SECONDS + WAIT_S))
while true; do
  state=$(node_state)
  case $state in
    idle | mixed | allocated) break ;;
    drain* | down*)
      # a drain survives restarts; a fresh config makes it stale
      scontrol update NodeName="$NODE_NAME" State=RESUME >/dev/null 2>&1 || true
      ;;
  esac
  if ((SECONDS >= deadline)); then
    die "node $NODE_NAME is '${state:-unknown}' after ${WAIT_S}s, not idle" "$LOG_DIR/slurmctld.log"
  fi
  sleep 0.2
done
step idle "node $NODE_NAME is $state"

smoke || die "'srun -n1 true' failed on the fresh cluster" "$LOG_DIR/slurmd.log"
step smoke "srun -n1 true passed"
echo "[slurm] $(sinfo --version), ready in $(_since "$T_START")s"
