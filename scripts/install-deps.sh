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

# A JDK 25 or newer. Debian 12 ships none; use one that is already there (scripts/java-home.sh looks in
# JAVA_HOME and /usr/lib/jvm), else a Debian package of 25+ if the configured apt sources offer one.
root=$(cd "$(dirname "$0")/.." && pwd)
if (. "$root/scripts/java-home.sh") >/dev/null 2>&1; then
  exit 0
fi
apt-get update -q >/dev/null 2>&1 || true
for candidate in temurin-25-jdk openjdk-25-jdk-headless openjdk-25-jdk openjdk-26-jdk-headless; do
  version=$(apt-cache policy "$candidate" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  if [ -n "$version" ] && [ "$version" != "(none)" ]; then
    echo "install-deps: installing $candidate $version"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$candidate"
    (. "$root/scripts/java-home.sh") && exit 0
  fi
done
cat >&2 <<'MSG'
install-deps: Ferry needs a JDK 25 or newer, and none is installed nor offered by this machine's apt sources
(Debian 12 has OpenJDK 17 only). Install one, then run this script again:
  - Adoptium's apt repository (https://packages.adoptium.net/artifactory/deb, package temurin-25-jdk), or
  - a JDK 25 tarball from https://jdk.java.net/25/ or https://adoptium.net/ unpacked under /usr/lib/jvm/,
    or anywhere with JAVA_HOME pointing at it.
MSG
exit 1
