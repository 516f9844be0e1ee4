#!/usr/bin/env bash
# Build Prometheus 3 (prometheus and promtool) from its pinned Go module with the machine's Go toolchain.
# Only the service discoveries the project uses are compiled in: kubernetes_sd_configs, plus the ones
# Prometheus always keeps (static, file_sd_configs, http_sd_configs). No web UI (no `builtinassets` tag):
# the HTTP API and /metrics work. Results are cached under the user cache dir, keyed by version, so a warm
# run only checks that the binaries exist. Prints the directory holding the binaries (last line of stdout).
#   hack/build-prometheus.sh              build if needed, print the bin dir
#   hack/build-prometheus.sh --print-bin  print the bin dir, build nothing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

MODULE=github.com/prometheus/prometheus
# Module version v0.3MM.P is Prometheus 3.MM.P (v0.316.0 = 3.16.0).
if [[ ! "$PROMETHEUS_MODULE_VERSION" =~ ^v0\.3([0-9][0-9])\.([0-9]+)$ ]]; then
  echo "[build-prometheus] PROMETHEUS_MODULE_VERSION=$PROMETHEUS_MODULE_VERSION is not v0.3MM.P" >&2
  exit 1
fi
PROM_VERSION="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"
# Prometheus' plugins/ package: remove_all_sd drops every optional discovery, enable_<name>_sd adds one back.
TAGS="remove_all_sd,enable_kubernetes_sd"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
KEY="prometheus-${PROM_VERSION}_sd-kubernetes_r1"
BIN="$CACHE_ROOT/$KEY/bin"
ALL=(prometheus promtool)

log() { echo "[build-prometheus] $*" >&2; }

if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

complete() { for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
if complete; then echo "$BIN"; exit 0; fi
# One builder at a time: concurrent callers (tests, demo, a second shell) wait for the first.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/$KEY.lock"
if ! flock -n 9; then
  log "another build of $KEY is running; waiting for it"
  flock 9
fi
if complete; then echo "$BIN"; exit 0; fi
log "building Prometheus $PROM_VERSION ($MODULE@$PROMETHEUS_MODULE_VERSION, tags $TAGS) into $BIN"
log "(cold build: several minutes on 2 cores)"

command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
# The module ships a go.work naming folders that are not in the module zip: build the module alone.
export GOWORK=off

if ! dl="$(go mod download -json "$MODULE@$PROMETHEUS_MODULE_VERSION")"; then
  echo "$dl" >&2
  log "FAILED: cannot download $MODULE@$PROMETHEUS_MODULE_VERSION (see the go output above)"
  exit 1
fi
moddir="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))' <<<"$dl")"
[[ -n "$moddir" && -d "$moddir" ]] || { echo "$dl" >&2; log "FAILED: go mod download gave no module directory"; exit 1; }
if [[ -f "$moddir/VERSION" && "$(tr -d '[:space:]' <"$moddir/VERSION")" != "$PROM_VERSION" ]]; then
  log "FAILED: $moddir/VERSION says $(cat "$moddir/VERSION"), expected $PROM_VERSION"
  exit 1
fi

# The module's go.mod carries its own replace/exclude rules, which apply only when it is the main module:
# build inside a writable copy of the module directory (the module cache is read-only).
SRC="$CACHE_ROOT/$KEY/src"
rm -rf "$SRC"
mkdir -p "$(dirname "$SRC")" "$BIN"
cp -r "$moddir" "$SRC"
chmod -R u+w "$SRC"

V=github.com/prometheus/common/version
LDFLAGS="-s -w -X $V.Version=$PROM_VERSION -X $V.Revision=module-$PROMETHEUS_MODULE_VERSION"
LDFLAGS+=" -X $V.Branch=HEAD -X $V.BuildUser=mlrollout -X $V.BuildDate=19700101-00:00:00"

for b in "${ALL[@]}"; do
  [[ -x "$BIN/$b" ]] && continue
  log "go build ./cmd/$b"
  if ! (cd "$SRC" && go build -trimpath -tags "$TAGS" -ldflags "$LDFLAGS" -o "$BIN/$b.tmp" "./cmd/$b"); then
    rm -f "$BIN/$b.tmp"
    log "FAILED: go build ./cmd/$b of $MODULE@$PROMETHEUS_MODULE_VERSION in $SRC (see the go output above)"
    exit 1
  fi
  mv "$BIN/$b.tmp" "$BIN/$b"
done

complete || { log "missing binaries in $BIN after the build"; exit 1; }
"$BIN/prometheus" --version >&2
echo "$BIN"
