#!/usr/bin/env bash
# Build Helm 3 (helm) from its pinned Go module (helm.sh/helm/v3/cmd/helm) with the machine's Go toolchain,
# for the chart in charts/mlrollout and its tests. `go install MODULE/cmd/helm@VERSION` builds with Helm's
# own go.mod and go.sum as the main module (no internet but the Go module proxy). The result is cached under
# the user cache dir, keyed by version, so a warm run only checks that the binary exists. Prints the
# directory holding the binary (last line of stdout).
#   hack/build-helm.sh              build if needed, print the bin dir
#   hack/build-helm.sh --print-bin  print the bin dir, build nothing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

MODULE=helm.sh/helm/v3
if [[ ! "${HELM_VERSION:-}" =~ ^v3\.[0-9]+\.[0-9]+$ ]]; then
  echo "[build-helm] HELM_VERSION=${HELM_VERSION:-} is not a Helm 3 release v3.Y.Z" >&2
  exit 1
fi

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
KEY="helm-${HELM_VERSION}_r1"
BIN="$CACHE_ROOT/$KEY/bin"

log() { echo "[build-helm] $*" >&2; }

if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

if [[ -x "$BIN/helm" ]]; then echo "$BIN"; exit 0; fi
# One builder at a time: concurrent callers (tests, a second shell) wait for the first.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/$KEY.lock"
if ! flock -n 9; then
  log "another build of $KEY is running; waiting for it"
  flock 9
fi
if [[ -x "$BIN/helm" ]]; then echo "$BIN"; exit 0; fi
log "building Helm $HELM_VERSION ($MODULE/cmd/helm@$HELM_VERSION) into $BIN"
log "(cold build: a few minutes on 2 cores)"

command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOWORK=off

# The Kubernetes version Helm reports as the default .Capabilities.KubeVersion (and lints against) comes from
# the k8s.io/client-go it is built with (v0.Y.Z = Kubernetes 1.Y), as Helm's own Makefile sets it.
if ! gomod="$(go mod download -json "$MODULE@$HELM_VERSION")"; then
  echo "$gomod" >&2
  log "FAILED: cannot download $MODULE@$HELM_VERSION (see the go output above)"
  exit 1
fi
gomod_file="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("GoMod", ""))' <<<"$gomod")"
[[ -n "$gomod_file" && -f "$gomod_file" ]] || { echo "$gomod" >&2; log "FAILED: no go.mod for $MODULE@$HELM_VERSION"; exit 1; }
client_go="$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod_file")"
[[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || { log "FAILED: cannot read the k8s.io/client-go version from $gomod_file"; exit 1; }
k8s_minor="${BASH_REMATCH[1]}"

LDFLAGS="-s -w"
LDFLAGS+=" -X $MODULE/internal/version.version=$HELM_VERSION"
LDFLAGS+=" -X $MODULE/internal/version.gitCommit=module-$HELM_VERSION"
LDFLAGS+=" -X $MODULE/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  LDFLAGS+=" -X $MODULE/$pkg.k8sVersionMajor=1 -X $MODULE/$pkg.k8sVersionMinor=$k8s_minor"
done

OUT="$CACHE_ROOT/$KEY/gobin.tmp"
rm -rf "$OUT"
mkdir -p "$OUT" "$BIN"
log "go install $MODULE/cmd/helm@$HELM_VERSION"
if ! GOBIN="$OUT" go install -trimpath -ldflags "$LDFLAGS" "$MODULE/cmd/helm@$HELM_VERSION"; then
  rm -rf "$OUT"
  log "FAILED: go install $MODULE/cmd/helm@$HELM_VERSION (see the go output above)"
  exit 1
fi
mv "$OUT/helm" "$BIN/helm"
rm -rf "$OUT"

[[ -x "$BIN/helm" ]] || { log "missing helm in $BIN after the build"; exit 1; }
"$BIN/helm" version >&2
echo "$BIN"
