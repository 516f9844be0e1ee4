#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io (and debootstrap,
# which hack/base-image.sh needs) when missing, start dockerd in the background when `docker info`
# fails, and wait until it answers. Idempotent: a running engine is left alone.
#
#   hack/docker-engine.sh            # ensure the engine runs
#   DOCKERD_LOG=/path/to.log ...     # where dockerd's output goes (default: ~/.cache/mlrollout/dockerd.log)
set -euo pipefail

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
DOCKERD_LOG="${DOCKERD_LOG:-$CACHE_ROOT/dockerd.log}"
WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

log() { echo "[docker-engine] $*" >&2; }

if docker info >/dev/null 2>&1; then exit 0; fi

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v docker >/dev/null || need_pkgs+=(docker.io)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
  [[ $(id -u) -eq 0 ]] || { log "need root to apt-get install ${need_pkgs[*]}"; exit 1; }
  log "installing ${need_pkgs[*]} from Debian"
  # Another apt may hold the lock for a while (other tooling installs packages too).
  apt-get update -qq -o DPkg::Lock::Timeout=300
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends "${need_pkgs[@]}" >&2
fi

if ! pgrep -x dockerd >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { log "dockerd is not running and starting it needs root"; exit 1; }
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the engine outlives the shell or test session that started it, like a system service.
  setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT_SECONDS"); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
log "docker engine did not answer within ${WAIT_SECONDS}s; last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
