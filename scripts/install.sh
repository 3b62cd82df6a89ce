#!/usr/bin/env bash
# A new machine in one step: Debian packages, the jar, and the demo guest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
