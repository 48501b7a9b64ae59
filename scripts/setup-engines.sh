#!/usr/bin/env bash
# Install and start the container engines the integration tests need, and build
# the offline test image on both of them.
#
#   - Docker Engine (Debian's docker.io): dockerd --iptables=false --bridge=none
#   - Podman API service: podman system service --time=0 unix:///run/podman/podman.sock
#   - catatonit, the init process Podman's --init runs (every mdivicomtools
#     container has one; Docker's docker-init comes with docker.io)
#   - image localhost/mdivicom-test:1 on both engines, built from Debian's
#     busybox-static (no registry is reachable on CI machines)
#
# Works on a fresh Debian 12 machine (root, nothing installed, no daemons
# running) and is idempotent: on a machine where everything is already set up it
# only checks and returns in about a second. See docs/development.md for the
# facts this relies on.
#
# Run it, don't source it; it exports nothing. Daemon logs go to
# ${MDIVICOM_CI_LOGS:-/tmp/mdivicom-ci}. The daemons are left running.
#
# Environment:
#   MDIVICOM_CI_LOGS       log folder (default /tmp/mdivicom-ci)
#   MDIVICOM_ENGINE_WAIT   seconds to wait for each daemon to answer (default 60)
set -euo pipefail

LOG_DIR=${MDIVICOM_CI_LOGS:-/tmp/mdivicom-ci}
WAIT_S=${MDIVICOM_ENGINE_WAIT:-60}
IMAGE=localhost/mdivicom-test:1
PODMAN_SOCK=/run/podman/podman.sock
PODMAN_URL=unix://$PODMAN_SOCK
CONTAINERS_CONF=/etc/containers/containers.conf
CONF_CHANGED=
APT_PACKAGES=(docker.io podman runc catatonit busybox-static)
# Applets the tests rely on; the image links every applet busybox has, and the
# build fails if one of these is missing.
REQUIRED_APPLETS=(sh cat ls wc echo mkdir sleep id sha256sum touch rm cp mv head
  tail env printf test true false find sort uniq tr dd stat date pwd kill yes)

LIB_TAG=engines
LIB_STEP_WIDTH=16
# shellcheck source=scripts/_lib.sh
source "$(dirname "$0")/_lib.sh"

need_root
mkdir -p "$LOG_DIR"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

docker_ok() { timeout 10 docker version >/dev/null 2>&1; }
podman_ok() { timeout 10 podman --remote --url "$PODMAN_URL" version >/dev/null 2>&1; }

# A killed daemon can linger as a zombie here (PID 1 may be slow to reap
# orphans); those count as gone.
pid_live() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $s && $s != Z* ]]
}
# live_pids PGREP_ARGS...: pids of matching processes that are not zombies
live_pids() {
  local p
  for p in $(pgrep "$@" || true); do
    if pid_live "$p"; then echo "$p"; fi
  done
  return 0
}
# remove a pid file whose process is gone (dockerd refuses to start while
# /var/run/docker.pid names an existing process, a zombie included)
drop_stale_pidfile() {
  local pid
  [[ -f $1 ]] || return 0
  pid=$(tr -dc 0-9 <"$1")
  if [[ -z $pid ]] || ! pid_live "$pid"; then rm -f "$1"; fi
}

# wait_until NAME PID LOG PGREP_ARGS... -- CHECK_CMD...
# Polls CHECK_CMD for up to $WAIT_S seconds; fails early if the daemon died
# (neither PID alive nor a process matching PGREP_ARGS).
wait_until() {
  local name=$1 pid=$2 log=$3
  shift 3
  local pg=()
  while [[ $1 != -- ]]; do pg+=("$1"); shift; done
  shift
  local deadline=$((SECONDS + WAIT_S))
  until "$@"; do
    if ! { [[ -n $pid ]] && pid_live "$pid"; } && [[ -z $(live_pids "${pg[@]}") ]]; then
      die "$name exited before it answered" "$log"
    fi
    if ((SECONDS >= deadline)); then
      die "$name did not answer within ${WAIT_S}s${pid:+ (pid $pid left running)}" "$log"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- 1. packages
have_packages() {
  command -v dockerd >/dev/null && command -v podman >/dev/null &&
    command -v runc >/dev/null && [[ -x /usr/bin/docker || -n $(command -v docker) ]] &&
    [[ -x /bin/busybox ]] && command -v catatonit >/dev/null &&
    [[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == "install ok installed" ]]
}
if have_packages; then
  step packages "already installed"
else
  APT_LOG=$LOG_DIR/apt.log
  # Debian's docker.io postinst would start dockerd with default options where an
  # init script can run; apt_install keeps services from starting.
  apt_install "$APT_LOG" "${APT_PACKAGES[@]}"
  have_packages || die "packages installed but dockerd/podman/runc/catatonit/busybox-static still missing" "$APT_LOG"
  step packages "installed ${APT_PACKAGES[*]} (log: $APT_LOG)"
fi

# ------------------------------------------------------ 2. containers.conf
# crun (Podman's default runtime) fails on this hybrid cgroup setup, and Podman's
# default ulimits exceed the host's hard limits. Set, in place and keeping every
# other setting:  [containers] default_ulimits = []   [engine] runtime = "runc"
merge_containers_conf() {
  awk '
    BEGIN {
      key["containers"] = "default_ulimits"; line["containers"] = "default_ulimits = []"
      key["engine"] = "runtime";             line["engine"] = "runtime = \"runc\""
      sec = ""; skip = 0
    }
    function depth(s,   t, o, c) {   # brackets opened minus closed
      t = s; o = gsub(/\[/, "", t); t = s; c = gsub(/\]/, "", t); return o - c
    }
    function finish(   ) {           # leaving section sec
      if ((sec in key) && !(sec in done)) { print line[sec]; done[sec] = 1 }
    }
    skip > 0 { skip += depth($0); next }   # rest of a replaced multi-line value
    /^[ \t]*\[/ {
      finish()
      h = $0; sub(/^[ \t]*\[+[ \t]*/, "", h); sub(/[ \t]*\]+.*$/, "", h)
      sec = ($0 ~ /^[ \t]*\[\[/) ? "" : h
      seen[sec] = 1
      print; next
    }
    (sec in key) && $0 ~ ("^[ \t]*" key[sec] "[ \t]*=") {
      if (!(sec in done)) { print line[sec]; done[sec] = 1 }
      v = $0; sub(/^[^=]*=/, "", v); sub(/#.*$/, "", v)
      skip = depth(v); if (skip < 0) skip = 0
      next
    }
    { print }
    END {
      finish()
      n = 0
      if (!("containers" in seen)) { if (NR > 0 || n++) print ""; print "[containers]"; print line["containers"] }
      if (!("engine" in seen))     { if (NR > 0 || n++) print ""; print "[engine]";     print line["engine"] }
    }
  '
}
mkdir -p "$(dirname "$CONTAINERS_CONF")"
if [[ -f $CONTAINERS_CONF ]]; then
  merge_containers_conf <"$CONTAINERS_CONF" >"$TMP/containers.conf"
  if cmp -s "$TMP/containers.conf" "$CONTAINERS_CONF"; then
    step containers.conf "already has default_ulimits = [] and runtime = \"runc\""
  else
    cp -p "$CONTAINERS_CONF" "$CONTAINERS_CONF.bak-$(date +%Y%m%d%H%M%S)"
    cat "$TMP/containers.conf" >"$CONTAINERS_CONF"
    CONF_CHANGED=1
    step containers.conf "merged default_ulimits = [] and runtime = \"runc\" into $CONTAINERS_CONF (backup kept)"
  fi
else
  {
    echo "# Written by mdivicomtools scripts/setup-engines.sh: crun fails on hybrid cgroups here,"
    echo "# and Podman's default ulimits exceed the host's hard limits."
    merge_containers_conf </dev/null
  } >"$CONTAINERS_CONF"
  step containers.conf "wrote $CONTAINERS_CONF"
fi

# ----------------------------------------------------------------- 3. dockerd
if docker_ok; then
  step dockerd "already answering"
else
  DOCKERD_LOG=$LOG_DIR/dockerd.log
  pid=
  running=$(live_pids -x dockerd)
  if [[ -n $running ]]; then
    what="was already starting (pid ${running//$'\n'/ })"
  else
    drop_stale_pidfile /var/run/docker.pid
    drop_stale_pidfile /var/run/docker/containerd/containerd.pid
    echo "=== $(date -Is) dockerd --iptables=false --bridge=none" >>"$DOCKERD_LOG"
    setsid nohup dockerd --iptables=false --bridge=none </dev/null >>"$DOCKERD_LOG" 2>&1 &
    pid=$!
    what="started (pid $pid, log $DOCKERD_LOG)"
  fi
  wait_until dockerd "$pid" "$DOCKERD_LOG" -x dockerd -- docker_ok
  step dockerd "$what"
fi

# ---------------------------------------------------------- 4. podman service
PODMAN_PATTERN="podman system service.*$PODMAN_SOCK"
if podman_ok; then
  if [[ -n $CONF_CHANGED ]]; then
    step podman-service "WARNING: already answering on $PODMAN_SOCK, but it was started before $CONTAINERS_CONF changed; restart it"
  else
    step podman-service "already answering on $PODMAN_SOCK"
  fi
else
  PODMAN_LOG=$LOG_DIR/podman-service.log
  pid=
  running=$(live_pids -f "$PODMAN_PATTERN")
  if [[ -n $running ]]; then
    what="was already starting (pid ${running//$'\n'/ })"
  else
    mkdir -p "$(dirname "$PODMAN_SOCK")"
    rm -f "$PODMAN_SOCK" # stale socket of a service that is gone
    echo "=== $(date -Is) podman system service --time=0 $PODMAN_URL" >>"$PODMAN_LOG"
    # started from the log folder: conmon writes a file named `oom` into the
    # service's working directory when a container is OOM-killed
    pushd "$LOG_DIR" >/dev/null
    setsid nohup podman system service --time=0 "$PODMAN_URL" </dev/null >>"$PODMAN_LOG" 2>&1 &
    pid=$!
    popd >/dev/null
    what="started (pid $pid, log $PODMAN_LOG)"
  fi
  wait_until "podman service" "$pid" "$PODMAN_LOG" -f "$PODMAN_PATTERN" -- podman_ok
  step podman-service "$what"
fi

# -------------------------------------------------------------- 5. test image
docker_has() { docker image inspect "$IMAGE" >/dev/null 2>&1; }
podman_has() { podman image exists "$IMAGE" 2>/dev/null; }
ROOTFS_TAR=$TMP/rootfs.tar
build_rootfs_tar() {
  [[ -f $ROOTFS_TAR ]] && return 0
  local r=$TMP/rootfs a
  mkdir -p "$r"/{bin,etc,dev,proc,sys,root,tmp}
  chmod 1777 "$r/tmp"
  chmod 700 "$r/root"
  cp /bin/busybox "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do
    [[ $a == busybox || -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
  done
  for a in "${REQUIRED_APPLETS[@]}"; do
    [[ -L $r/bin/$a ]] || die "busybox-static has no applet '$a'"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  # fixed owner, order and times: the same busybox gives the same layer
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 \
    -C "$r" -cf "$ROOTFS_TAR" .
}
IMPORT_CHANGES=(--change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]')
done_what=
if docker_has; then
  done_what+="${done_what:+, }docker: present"
else
  build_rootfs_tar
  docker import "${IMPORT_CHANGES[@]}" "$ROOTFS_TAR" "$IMAGE" >/dev/null ||
    die "docker import failed"
  done_what+="${done_what:+, }docker: imported"
fi
if podman_has; then
  done_what+="${done_what:+, }podman: present"
else
  build_rootfs_tar
  podman import --quiet "${IMPORT_CHANGES[@]}" "$ROOTFS_TAR" "$IMAGE" >/dev/null ||
    die "podman import failed"
  done_what+="${done_what:+, }podman: imported"
fi
step image "$IMAGE ($done_what)"

# ---------------------------------------------------------------- 6. summary
echo "[engines] $(docker version --format 'docker: client {{.Client.Version}}, engine {{.Server.Version}} (API {{.Server.APIVersion}}, min {{.Server.MinAPIVersion}})')"
echo "[engines] $(podman --remote --url "$PODMAN_URL" version --format 'podman: client {{.Client.Version}}, service {{.Server.Version}} (API {{.Server.APIVersion}}) on '"$PODMAN_SOCK")"
echo "[engines] ready in $(_since "$T_START")s"
