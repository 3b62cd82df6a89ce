#!/usr/bin/env bash
# Steady-state benchmark: the demo guest's own disk I/O under `ferry run` against plain
# qemu-system-x86_64 with the same -drive and the same other options (docs/BENCHMARKS.md).
#
#   bench/steady-state.sh [--seconds N] [--runs N] [--format raw|qcow2] [--drive-opts 'cache=none,aio=native']
#                         [--size SIZE] [--workloads randwrite,randread,seqwrite] [--keep]
#
# Defaults: 10 s per workload, 3 runs, raw, no extra drive options, a 1 GiB disk. For each run and
# workload the guest boots twice, plain QEMU and ferry run (plain first in odd runs, ferry first in
# even ones, after a `sync`), so that drift on the machine and leftover writeback hit both alike. Both boot from one disk image per invocation, filled with a pattern beforehand (every block
# allocated, so reads are never of holes and writes never allocate). TCG, 1 vCPU, 256 MiB.
# Results: bench/results/steady-state-FORMAT-STAMP.jsonl (one line per boot); the table on stdout
# (again: python3 bench/steady-state.py table FILE). Failed boots' logs: bench/out/steady-state-STAMP/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
usage() { sed -n '5,6p' "$0" | sed 's/^# *//' >&2; exit 2; }

seconds=10 runs=3 format=raw drive_opts="" size=1G workloads=randwrite,randread,seqwrite keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?}"; shift 2 ;;
    --runs) runs="${2:?}"; shift 2 ;;
    --format) format="${2:?}"; shift 2 ;;
    --drive-opts) drive_opts="${2?}"; shift 2 ;;
    --size) size="${2:?}"; shift 2 ;;
    --workloads) workloads="${2:?}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench/steady-state.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ && "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench/steady-state.sh: --seconds and --runs take a positive number" >&2; exit 2; }
case "$format" in raw|qcow2) ;; *) echo "bench/steady-state.sh: --format raw or qcow2" >&2; exit 2 ;; esac
IFS=, read -r -a workload_list <<< "$workloads"
for w in "${workload_list[@]}"; do
  case "$w" in randwrite|randread|seqwrite) ;; *) echo "bench/steady-state.sh: unknown workload $w" >&2; exit 2 ;; esac
done
for tool in qemu-system-x86_64 qemu-img qemu-io python3 timeout git; do
  command -v "$tool" >/dev/null || { echo "bench/steady-state.sh: $tool is missing" >&2; exit 1; }
done
log() { echo "steady-state: $*" >&2; }

[ -f cli/target/ferry.jar ] || scripts/build.sh
guest/build.sh >/dev/null

stamp=$(date +%Y%m%d-%H%M%S)
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-steady.XXXXXX")
mkdir -p bench/results
results="bench/results/steady-state-$format-$stamp.jsonl"
failed_dir="bench/out/steady-state-$stamp"
child=""
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true   # timeout(1) passes it on to the QEMU or ferry it runs
    wait "$child" 2>/dev/null || true
  fi
  if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One image for every boot of this invocation. Filled from the host with a pattern so that every block
# holds data: a read of a hole (sparse raw, unallocated qcow2 cluster) skips the data path, and NBD
# may answer it with a hole reply instead of data; a write into a hole allocates. Both would measure
# the image's sparseness, not the disk path. qemu-io writes through QEMU's own image code, so a qcow2
# image ends up with every cluster allocated, as a long-running VM's disk would be.
disk="$work/disk.$format"
qemu-img create -q -f "$format" "$disk" "$size"
bytes=$(qemu-img info --output=json "$disk" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
chunk=$((64 << 20))
fill=()
for ((offset = 0; offset < bytes; offset += chunk)); do
  length=$(( bytes - offset < chunk ? bytes - offset : chunk ))
  fill+=(-c "write -q -P 0x5a $offset $length")
done
log "filling $disk ($bytes bytes, pattern 0x5a)"
qemu-io -f "$format" "${fill[@]}" -c flush "$disk"

drive="file=$disk,format=$format,if=virtio${drive_opts:+,$drive_opts}"
guest=(-kernel guest/out/vmlinuz -initrd guest/out/initramfs.cpio.gz)
commit=$(git rev-parse --short HEAD)
meta=$(python3 -c 'import json,sys; a=sys.argv; print(json.dumps({"format": a[1], "drive": a[2], "seconds": int(a[3]),
  "size_bytes": int(a[4]), "commit": a[5], "date": a[6], "qemu": a[7], "cores": int(a[8]), "accel": "tcg"}))' \
  "$format" "${drive/$work/WORK}" "$seconds" "$bytes" "$commit" "$(date -Iseconds)" \
  "$(qemu-system-x86_64 --version | head -n1)" "$(nproc)")
limit=$((seconds + 120))   # boot (~5 s under TCG), the workload, the final fdatasync, shutdown; generous

# boot RUNNER WORKLOAD RUN: one guest boot, bounded by $limit, then one JSON line into $results.
boot() {
  local runner="$1" workload="$2" run="$3" tag="$1-$2-$3"
  local serial="$work/$tag.serial" out="$work/$tag.log"
  local append="console=ttyS0 quiet ferry.workload=$workload,seconds=$seconds"
  local cmd
  if [ "$runner" = plain ]; then
    cmd=(qemu-system-x86_64 -name steady -machine pc -accel tcg -m 256 -smp 1 -nodefaults -display none
         "${guest[@]}" -append "$append" -drive "$drive" -serial "file:$serial")
  else
    cmd=(bin/ferry run -name steady -accel tcg -m 256 -smp 1 -display none
         "${guest[@]}" -append "$append" -drive "$drive" -serial "file:$serial" --runtime-dir "$work/$tag.run")
  fi
  local start=$SECONDS rc=0
  timeout --kill-after=20 "$limit" "${cmd[@]}" >"$out" 2>&1 </dev/null &
  child=$!
  wait "$child" || rc=$?
  child=""
  local wall=$((SECONDS - start))
  : >> "$serial"
  local line
  line=$(python3 bench/steady-state.py record --serial "$serial" --output "$out" --workload "$workload" --runner "$runner" \
         --run "$run" --wall "$wall" --rc "$rc" --meta "$meta")
  echo "$line" >> "$results"
  if [[ "$line" == *'"error"'* ]]; then
    failures=$((failures + 1))
    mkdir -p "$failed_dir"
    cp "$serial" "$out" "$failed_dir/" 2>/dev/null || true
    log "run $run $workload $runner: FAILED after ${wall}s (exit $rc); logs in $failed_dir/$tag.*"
  else
    log "run $run $workload $runner: $(sed -n 's/.*"mib_per_s": \([0-9.]*\).*/\1/p' <<< "$line") MiB/s, ${wall}s"
  fi
}

failures=0
log "$runs run(s) x ${workload_list[*]} x plain,ferry; $seconds s each; drive $drive"
for ((run = 1; run <= runs; run++)); do
  for workload in "${workload_list[@]}"; do
    # Odd runs plain first, even runs ferry first, and nothing dirty in the host's page cache at
    # each boot: the first runs of this script always booted plain first, and ferry's boot then paid
    # for the writeback of what plain's writes had left dirty (a bias of 10-15 % on randwrite).
    if (( run % 2 )); then order=(plain ferry); else order=(ferry plain); fi
    for runner in "${order[@]}"; do
      sync
      boot "$runner" "$workload" "$run"
    done
  done
done
log "results: $results"
python3 bench/steady-state.py table "$results"
[ "$failures" = 0 ] || { log "$failures boot(s) failed"; exit 1; }
