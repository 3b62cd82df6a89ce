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

. bench/netns-pair.sh
netns_pair_up ferry-rb rb 10.124.0

python3 bench/resume.py "$@"
