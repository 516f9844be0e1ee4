#!/usr/bin/env bash
# Build Traefik from its pinned Go module with the machine's Go toolchain, and stage the standard-channel
# Gateway API CRDs of the release that Traefik is built against (from the sigs.k8s.io/gateway-api module,
# so no download from GitHub). Cached under the user cache dir, keyed by both versions, so a warm run
# only checks that the files exist. Prints the cache directory (bin/traefik, crds/*.yaml) as its last line.
#   hack/build-traefik.sh              build if needed, print the dir
#   hack/build-traefik.sh --print-dir  print the dir, build nothing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

MODULE=github.com/traefik/traefik/v3
GATEWAY_MODULE=sigs.k8s.io/gateway-api
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
KEY="traefik-${TRAEFIK_VERSION}_gateway-api-${GATEWAY_API_VERSION}_r1"
DIR="$CACHE_ROOT/$KEY"

log() { echo "[build-traefik] $*" >&2; }

if [[ "${1:-}" == "--print-dir" ]]; then echo "$DIR"; exit 0; fi

complete() { [[ -x "$DIR/bin/traefik" && -f "$DIR/crds/gateway.networking.k8s.io_httproutes.yaml" ]]; }
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

module_dir() {
  local dl
  if ! dl="$(go mod download -json "$1")"; then
    echo "$dl" >&2
    log "FAILED: cannot download $1 (see the go output above)"
    exit 1
  fi
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir", ""))' <<<"$dl"
}

gateway="$(module_dir "$GATEWAY_MODULE@$GATEWAY_API_VERSION")"
mkdir -p "$DIR/crds"
# Standard channel only; the ValidatingAdmissionPolicy file guards upgrades to experimental CRDs.
for f in "$gateway"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
  case "$(basename "$f")" in *vap_*) continue ;; esac
  cp "$f" "$DIR/crds/"
done
chmod -R u+w "$DIR/crds"

if [[ ! -x "$DIR/bin/traefik" ]]; then
  src="$(module_dir "$MODULE@$TRAEFIK_VERSION")"
  log "building Traefik $TRAEFIK_VERSION ($MODULE) into $DIR/bin (cold build: several minutes on 2 cores)"
  # Its go.mod's replace rules apply only when it is the main module: build in a writable copy.
  rm -rf "$DIR/src"
  cp -r "$src" "$DIR/src"
  chmod -R u+w "$DIR/src"
  # From v3.7 go.mod replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext, a
  # nested module, which module zips never contain. Upstream it is an extension point holding two
  # empty structs embedded by dynamic.HTTP and dynamic.Router; recreate exactly that.
  ext="$DIR/src/pkg/config/dynamic/ext"
  if grep -q '^replace github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext' "$DIR/src/go.mod" \
      && [[ ! -f "$ext/go.mod" ]]; then
    mkdir -p "$ext"
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >"$ext/go.mod"
    cat >"$ext/ext.go" <<'GO'
// Package ext: extension points of Traefik's dynamic configuration (empty in the open-source build).
package ext

// HTTP is a dynamic.HTTP extension.
type HTTP struct{}

// Router is a dynamic.Router extension.
type Router struct{}
GO
  fi
  mkdir -p "$DIR/bin"
  V=$MODULE/pkg/version
  LDFLAGS="-s -w -X $V.Version=$TRAEFIK_VERSION -X $V.Codename=mlrollout -X $V.BuildDate=1970-01-01T00:00:00Z"
  if ! (cd "$DIR/src" && go build -trimpath -ldflags "$LDFLAGS" -o "$DIR/bin/traefik.tmp" ./cmd/traefik); then
    rm -f "$DIR/bin/traefik.tmp"
    log "FAILED: go build ./cmd/traefik of $MODULE@$TRAEFIK_VERSION in $DIR/src (see the go output above)"
    exit 1
  fi
  mv "$DIR/bin/traefik.tmp" "$DIR/bin/traefik"
  rm -rf "$DIR/src"
fi

complete || { log "missing files in $DIR after the build"; exit 1; }
"$DIR/bin/traefik" version >&2
echo "$DIR"
