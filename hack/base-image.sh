#!/usr/bin/env bash
# A local stand-in for python:3.11-slim, built from Debian's own packages with debootstrap, for
# machines that reach Debian's archive and PyPI but no container registry. Debian bookworm's
# python3 is 3.11, the same minor as the public default base.
#
#   hack/base-image.sh             # ensure the image exists, print its tag
#   hack/base-image.sh --tag       # print the tag only
#
# Cached by BASE_IMAGE_VERSION: `docker image inspect` skips the build; a `docker save` tarball
# under ~/.cache/mlrollout/ lets a fresh or restarted engine `docker load` it instead of rebuilding.
# The host CA bundle is copied in (and PIP_CERT/SSL_CERT_FILE point at it) so pip inside image
# builds trusts whatever this machine trusts on its way to PyPI.
set -euo pipefail

# Bump to rebuild: it is the cache key of the image and of its tarball.
BASE_IMAGE_VERSION="bookworm-py311-v1"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,ca-certificates"
TAG="mlrollout-base:${BASE_IMAGE_VERSION}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollout"
TARBALL="$CACHE_ROOT/base-image-${BASE_IMAGE_VERSION}.tar"
HOST_CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { echo "[base-image] $*" >&2; }

if [[ "${1:-}" == "--tag" ]]; then echo "$TAG"; exit 0; fi

if docker image inspect "$TAG" >/dev/null 2>&1; then echo "$TAG"; exit 0; fi

if [[ -s "$TARBALL" ]]; then
  log "loading $TAG from $TARBALL"
  docker load -i "$TARBALL" >&2
  echo "$TAG"; exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap not found (apt-get install debootstrap)"; exit 1; }
[[ -s "$HOST_CA" ]] || { log "host CA bundle $HOST_CA not found"; exit 1; }
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

mkdir -p "$CACHE_ROOT"
ROOTFS="$(mktemp -d "$CACHE_ROOT/rootfs.XXXXXX")"
cleanup() {
  # debootstrap mounts proc/sys inside the chroot and may leave them behind when it fails:
  # unmount first, and never let rm cross into another filesystem.
  for m in dev/pts sys proc; do umount "$ROOTFS/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap $SUITE ($PACKAGES) from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2

# Trust what the host trusts (a proxy's CA, if any): pip and OpenSSL read this bundle.
cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# Slim it like the official slim images: no package caches, lists, docs or manuals.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
# Nothing mounted may end up in the image.
for m in dev/pts sys proc; do umount "$ROOTFS/$m" 2>/dev/null || true; done

log "importing as $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$TAG" >&2

log "saving $TAG to $TARBALL"
docker save -o "$TARBALL.tmp" "$TAG"
mv "$TARBALL.tmp" "$TARBALL"
echo "$TAG"
