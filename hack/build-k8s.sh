#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kwok and
# CoreDNS from pinned Go modules with the machine's Go toolchain. Results are cached under the user cache dir,
# keyed by version, so a warm run only checks that the binaries exist.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
# r2: Kubernetes binaries carry their version (ldflags) and the node binaries joined the set.
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_coredns-${COREDNS_VERSION}_r2"
BIN="$CACHE_ROOT/$KEY/bin"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
ALL=("${K8S_CMDS[@]}" etcd kwok coredns)

log() { echo "[build-k8s] $*" >&2; }

if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

missing=()
for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$BIN"; exit 0; fi
# One builder at a time: concurrent callers (tests, demo, a second shell) wait for the first.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/$KEY.lock"
if ! flock -n 9; then
  log "another build of $KEY is running; waiting for it"
  flock 9
fi
missing=()
for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$BIN"; exit 0; fi
log "building ${missing[*]} into $BIN (cold build: this takes a while on 2 cores)"

command -v go >/dev/null || { log "go toolchain not found on PATH"; exit 1; }
WORK="$CACHE_ROOT/$KEY/src"
mkdir -p "$BIN" "$WORK"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
LDFLAGS="-s -w"

need() { [[ " ${missing[*]} " == *" $1 "* ]]; }
# build DIR OUTPUT PACKAGE [LDFLAGS]: go build inside the wrapper module DIR; stop with the reason on failure.
build() {
  log "go build $3"
  if ! (cd "$1" && go build -trimpath -ldflags "${4:-$LDFLAGS}" -o "$BIN/$2.tmp" "$3"); then
    log "FAILED: go build $3 (module $1, see the go output above)"
    exit 1
  fi
  mv "$BIN/$2.tmp" "$BIN/$2"
}

# --- Kubernetes: a wrapper module that pins every staging module to v0.Y.Z ---
# The version variables Kubernetes' own build sets (hack/lib/version.sh), so nodes and servers report
# the pinned version rather than v0.0.0-master.
k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local out="$LDFLAGS" pkg key val
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for kv in "gitVersion=${K8S_VERSION}" gitMajor=1 "gitMinor=${minor}" gitTreeState=clean \
      "gitCommit=module-${K8S_VERSION}" "buildDate=1970-01-01T00:00:00Z"; do
      key="${kv%%=*}"; val="${kv#*=}"
      out+=" -X '${pkg}.${key}=${val}'"
    done
  done
  echo "$out"
}

k8s_missing=0
for c in "${K8S_CMDS[@]}"; do if need "$c"; then k8s_missing=1; fi; done
if [[ $k8s_missing -eq 1 ]]; then
  mod="$WORK/kubernetes"; mkdir -p "$mod"
  gomod_file="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  staging_ver="v0.${K8S_VERSION#v1.}"
  [[ -n "$gomod_file" && -f "$gomod_file" ]] || { log "cannot download k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
  {
    echo "module mlrollout.local/k8sbuild"
    echo
    echo "go 1.23"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    echo "replace ("
    # Every "k8s.io/x => ./staging/src/k8s.io/x" line of kubernetes' own go.mod.
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$gomod_file" |
      awk -v v="$staging_ver" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$mod/go.mod"
  echo 'package k8sbuild' > "$mod/doc.go"
  for c in "${K8S_CMDS[@]}"; do
    need "$c" || continue
    build "$mod" "$c" "k8s.io/kubernetes/cmd/$c" "$(k8s_ldflags)"
  done
fi

# --- etcd: the server module's root is its main package ---
if need etcd; then
  mod="$WORK/etcd"; mkdir -p "$mod"
  printf 'module mlrollout.local/etcdbuild\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$mod/go.mod"
  echo 'package etcdbuild' > "$mod/doc.go"
  build "$mod" etcd go.etcd.io/etcd/server/v3
fi

# --- kwok: fake nodes and pods ---
if need kwok; then
  mod="$WORK/kwok"; mkdir -p "$mod"
  printf 'module mlrollout.local/kwokbuild\n\ngo 1.23\n\nrequire sigs.k8s.io/kwok %s\n' "$KWOK_VERSION" > "$mod/go.mod"
  echo 'package kwokbuild' > "$mod/doc.go"
  build "$mod" kwok sigs.k8s.io/kwok/cmd/kwok
fi

# --- CoreDNS: cluster DNS for the real node's pods; the module root is its main package ---
if need coredns; then
  mod="$WORK/coredns"; mkdir -p "$mod"
  printf 'module mlrollout.local/corednsbuild\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" > "$mod/go.mod"
  echo 'package corednsbuild' > "$mod/doc.go"
  build "$mod" coredns github.com/coredns/coredns
fi

for b in "${ALL[@]}"; do [[ -x "$BIN/$b" ]] || { log "missing $b after build"; exit 1; }; done
echo "$BIN"
