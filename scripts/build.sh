#!/usr/bin/env bash
# Builds cli/target/ferry.jar (tests skipped; scripts/test.sh runs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/java-home.sh"
cd "$root"
mvn -B -q -DskipTests -Dmaven.test.skip.exec=true package "$@"
echo "built $root/cli/target/ferry.jar"
