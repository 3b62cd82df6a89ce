#!/usr/bin/env bash
# Installs the Debian packages Ferry's tests, demo and benchmarks need (run as root on Debian 12).
set -euo pipefail
packages=(
  maven
  qemu-system-x86 qemu-utils
  libnbd-bin
  linux-image-amd64 busybox-static cpio gzip kmod
  gcc libc6-dev
  socat iproute2
  openssl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
