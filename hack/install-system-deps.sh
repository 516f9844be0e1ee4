#!/usr/bin/env bash
# Debian packages the test suite and demo use. Installs only what is missing; apt-get update once.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || need+=(debootstrap)
# The real kubelet node (hack/real_node.py): container runtime, CNI plugins, kube-proxy's tools.
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || [[ -x /usr/sbin/iptables ]] || need+=(iptables)
command -v conntrack >/dev/null || [[ -x /usr/sbin/conntrack ]] || need+=(conntrack)
# Only silences kube-proxy's nftables clean-up errors.
command -v nft >/dev/null || [[ -x /usr/sbin/nft ]] || need+=(nftables)
if [[ ${#need[@]} -eq 0 ]]; then exit 0; fi
echo "[system-deps] installing: ${need[*]}" >&2
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps Debian from starting prometheus/docker as system services: tests start their own.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
