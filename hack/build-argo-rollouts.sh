#!/usr/bin/env bash
# Build Argo Rollouts' controller (cmd/rollouts-controller) from its pinned Go module with the machine's Go
# toolchain and stage its CRDs, for benchmarks/operator's side-by-side run. Cached under the user cache dir,
# keyed by version, so a warm run only checks that the files exist. Prints the cache directory
# (bin/rollouts-controller, crds/*.yaml) as its last line.
#   hack/build-argo-rollouts.sh              build if needed, print the dir
#   hack/build-argo-rollouts.sh --print-dir  print the dir, build nothing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

MODULE=github.com/argoproj/argo-rollouts
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
KEY="argo-rollouts-${ARGO_ROLLOUTS_VERSION}_r1"
DIR="$CACHE_ROOT/$KEY"

log() { echo "[build-argo-rollouts] $*" >&2; }

if [[ "${1:-}" == "--print-dir" ]]; then echo "$DIR"; exit 0; fi

complete() { [[ -x "$DIR/bin/rollouts-controller" && -f "$DIR/crds/rollout-crd.yaml" ]]; }
if complete; then echo "$DIR"; exit 0; fi
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/$KEY.lock"
if ! flock -n 9; then
  log "another build of $KEY is running; waiting for it"
  flock 9
fi
if complete; then echo "$DIR"; exit 0; fi
command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off

if ! dl="$(go mod download -json "$MODULE@$ARGO_ROLLOUTS_VERSION")"; then
  echo "$dl" >&2
  log "FAILED: cannot download $MODULE@$ARGO_ROLLOUTS_VERSION (see the go output above)"
  exit 1
fi
src="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))' <<<"$dl")"
mkdir -p "$DIR/crds" "$DIR/bin"
cp "$src"/manifests/crds/*-crd.yaml "$DIR/crds/"
chmod -R u+w "$DIR/crds"
log "building rollouts-controller $ARGO_ROLLOUTS_VERSION into $DIR/bin (cold build: several minutes on 2 cores)"
# Its go.mod's replace rules (k8s.io/* pins) apply only when it is the main module: build in a writable copy.
rm -rf "$DIR/src"
cp -r "$src" "$DIR/src"
chmod -R u+w "$DIR/src"
# Its metrics and healthz servers bind 0.0.0.0 with no flag for the address; servers here listen on
# loopback only, so the benchmark's build binds 127.0.0.1 (the one source change; no effect on its work).
sed -i 's|listenAddr *= "0.0.0.0:%d"|listenAddr = "127.0.0.1:%d"|' "$DIR/src/controller/controller.go"
grep -q 'listenAddr = "127.0.0.1:%d"' "$DIR/src/controller/controller.go" || { log "FAILED: listenAddr not found"; exit 1; }
V=$MODULE/utils/version
LDFLAGS="-s -w -X $V.version=${ARGO_ROLLOUTS_VERSION#v} -X $V.buildDate=1970-01-01T00:00:00Z -X $V.gitTreeState=clean"
if ! (cd "$DIR/src" && go build -trimpath -ldflags "$LDFLAGS" -o "$DIR/bin/rollouts-controller.tmp" ./cmd/rollouts-controller); then
  rm -f "$DIR/bin/rollouts-controller.tmp"
  log "FAILED: go build ./cmd/rollouts-controller of $MODULE@$ARGO_ROLLOUTS_VERSION in $DIR/src (see above)"
  exit 1
fi
mv "$DIR/bin/rollouts-controller.tmp" "$DIR/bin/rollouts-controller"
rm -rf "$DIR/src"
complete || { log "missing files in $DIR after the build"; exit 1; }
"$DIR/bin/rollouts-controller" --version >&2
echo "$DIR"
