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

NS_SRC=ferry-bench-src NS_DST=ferry-bench-dst
cleanup() {
  ip netns pids "$NS_SRC" 2>/dev/null | xargs -r kill -9 2>/dev/null || true   # only processes in our namespaces
  ip netns pids "$NS_DST" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS_SRC" 2>/dev/null || true
  ip netns del "$NS_DST" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
ip netns add "$NS_SRC"
ip netns add "$NS_DST"
ip link add fb-src netns "$NS_SRC" type veth peer name fb-dst netns "$NS_DST"
ip -n "$NS_SRC" addr add 10.123.0.1/24 dev fb-src
ip -n "$NS_DST" addr add 10.123.0.2/24 dev fb-dst
for ns in "$NS_SRC" "$NS_DST"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SRC" link set fb-src up
ip -n "$NS_DST" link set fb-dst up
ip netns exec "$NS_SRC" bash -c "exec 3<>/dev/tcp/10.123.0.2/9" 2>/dev/null || true   # warm ARP; refused is fine

python3 bench/migration.py "$@"
