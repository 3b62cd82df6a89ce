#!/usr/bin/env bash
# Resume benchmark (issue 11 item 6): a Ferry migration whose link is cut at about half of the bulk pass, then
# `migrate -d -b -r` (case resume) or `migrate -d -b` again (case restart, from zero); case uncut, the same migration
# without a cut, for reference. Cases alternate run by run.
#   bench/resume.sh                   3 runs of each case: 1 GiB disk with 512 MiB of data, guest writing 2M, 1gbit link
#   bench/resume.sh --rate 300mbit    a slower link, so that the bulk pass lasts longer (the cut lands closer to 50 %)
# Other options go to bench/resume.py (--runs N, --cases, --load, --seconds S, --cut-at F, --cut auto|ss|link, --keep).
# Results: bench/out/resume-*.jsonl (one line per run) and bench/out/resume-table-*.md. Needs root (ip netns, tc, ss -K).
# Its own namespaces, veth and addresses (not migration.sh's), so that the two benchmarks never meet.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/java-home.sh
export JAVA_HOME
for tool in qemu-system-x86_64 ip tc ss python3; do
  command -v "$tool" >/dev/null || { echo "bench/resume.sh: $tool is missing" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench/resume.sh: needs root for ip netns, tc and ss -K" >&2; exit 1; }
[ -f cli/target/ferry.jar ] || scripts/build.sh -o
guest/build.sh >/dev/null
mkdir -p bench/target/classes
javac -cp cli/target/ferry.jar -d bench/target/classes bench/src/BenchVerify.java

NS_SRC=ferry-rb-src NS_DST=ferry-rb-dst
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
ip link add rb-src netns "$NS_SRC" type veth peer name rb-dst netns "$NS_DST"
ip -n "$NS_SRC" addr add 10.124.0.1/24 dev rb-src
ip -n "$NS_DST" addr add 10.124.0.2/24 dev rb-dst
for ns in "$NS_SRC" "$NS_DST"; do ip -n "$ns" link set lo up; done
ip -n "$NS_SRC" link set rb-src up
ip -n "$NS_DST" link set rb-dst up
ip netns exec "$NS_SRC" bash -c "exec 3<>/dev/tcp/10.124.0.2/9" 2>/dev/null || true   # warm ARP; refused is fine

python3 bench/resume.py "$@"
