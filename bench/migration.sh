#!/usr/bin/env bash
# Migration benchmark: Ferry (migrate -d -b) vs QEMU 7.2's block migration vs the libvirt way
# (NBD + drive-mirror) vs a RAM-only floor (shared image), same guest, disk and workload.
#   bench/migration.sh            small matrix: netns 1gbit x {idle, 2M} x 1 GiB x 4 methods x 3 runs (~20 min)
#   bench/migration.sh --full     loopback, netns 1gbit, netns 200mbit x {idle, 2M, 10M, max} x {1 GiB, 8 GiB}
#   bench/migration.sh --tls      Ferry with TLS 1.3 (method ferry-tls) beside plain Ferry, with Ferry's CPU s per GiB
#   bench/migration.sh --tls --baseline DIR   the same, and beside it the Ferry checkout DIR (methods base-ferry,
#                                 base-ferry-tls), interleaved: before/after figures from one sitting
# Other options go to bench/migration.py (--runs N, --methods, --links, --loads, --disks, --cap S, --seconds S, --keep).
# Results: bench/out/results-*.jsonl (one line per run) and bench/out/table-*.md. Needs root (ip netns, tc).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/java-home.sh
export JAVA_HOME
for tool in qemu-system-x86_64 ip tc cmp python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench/migration.sh: $tool is missing" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/migration.sh: needs root for ip netns and tc" >&2; exit 1; }
[ -f cli/target/ferry.jar ] || scripts/build.sh
guest/build.sh >/dev/null
mkdir -p bench/target/classes
javac -cp cli/target/ferry.jar -d bench/target/classes bench/src/BenchVerify.java

. bench/netns-pair.sh
netns_pair_up ferry-bench fb 10.123.0

python3 bench/migration.py "$@"
