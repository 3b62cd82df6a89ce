#!/usr/bin/env bash
# Runs every test: unit (*Test), interop with qemu-img/qemu-io/nbdinfo/nbdcopy and VM tests (*IT).
# Pass -Pfast to run only the unit tier.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/java-home.sh"
cd "$root"
exec mvn -B verify "$@"
