#!/usr/bin/env bash
# Make a Docker engine available for the docker runtime and its tests (CI and users, as root).
#
# Idempotent: when `docker info` already reaches an engine it does nothing. Otherwise it installs
# Debian's docker.io (and debootstrap, which builds the offline base image: no registry is
# reachable on our machines) and starts dockerd in the background, logging to $DOCKERD_LOG.
# The default storage driver (overlay2) is tried first; where the kernel or the file system
# refuses it, dockerd is restarted with the slow but always-working vfs driver.
#
# Exit status: 0 once `docker info` answers; non-zero (with the tail of the dockerd log) if the
# engine never comes up within $DOCKERD_WAIT_S seconds.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
DOCKERD_WAIT_S=${DOCKERD_WAIT_S:-60}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/tmp/dockerd.takehome.pid}  # the dockerd this script started

log() { echo "install-docker: $*" >&2; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_up; then
  log "a Docker engine is already reachable; nothing to do"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "no Docker engine is reachable and this script needs root to install and start one"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  log "installing docker.io and debootstrap from Debian ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # --no-install-recommends keeps out cgroupfs-mount/git etc.; iptables and tini come as Depends.
  apt-get install -y -qq --no-install-recommends docker.io debootstrap iptables ca-certificates >/dev/null
fi

start_dockerd() {  # $@: extra dockerd flags
  log "starting dockerd $* (log: $DOCKERD_LOG)"
  # setsid + nohup: dockerd must outlive this script and the CI step's process group.
  setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  echo $! >"$DOCKERD_PIDFILE"
}

wait_engine() {  # $1: seconds; 0 once `docker info` answers, 1 if dockerd died or time ran out
  local deadline=$((SECONDS + $1)) pid
  pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
  while [ "$SECONDS" -lt "$deadline" ]; do
    engine_up && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 1
  done
  return 1
}

stop_dockerd() {
  local pid
  pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
}

# A dockerd of ours may already be running but still starting: give it its chance first.
if pgrep -x dockerd >/dev/null 2>&1; then
  log "dockerd is running but not answering yet; waiting for it"
  if wait_engine "$DOCKERD_WAIT_S"; then
    log "Docker engine is up"
    exit 0
  fi
  log "the running dockerd never answered; see $DOCKERD_LOG"
  tail -n 40 "$DOCKERD_LOG" >&2 || true
  exit 1
fi

: >"$DOCKERD_LOG"
start_dockerd
if wait_engine "$DOCKERD_WAIT_S"; then
  log "Docker engine is up (storage driver: $(docker info --format '{{.Driver}}' 2>/dev/null))"
  exit 0
fi

if grep -qiE 'overlay|storage.driver|graphdriver' "$DOCKERD_LOG"; then
  log "dockerd failed with the default storage driver; retrying with --storage-driver=vfs"
  stop_dockerd
  start_dockerd --storage-driver=vfs
  if wait_engine "$DOCKERD_WAIT_S"; then
    log "Docker engine is up (storage driver: vfs)"
    exit 0
  fi
fi

log "the Docker engine did not come up within ${DOCKERD_WAIT_S}s; the end of $DOCKERD_LOG follows"
tail -n 40 "$DOCKERD_LOG" >&2 || true
exit 1
