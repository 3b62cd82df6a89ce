#!/usr/bin/env bash
# Benchmark (not a test): the same 1 GiB image (raw, or with --format qcow2 the same bytes converted by
# `qemu-img convert -O qcow2`, every cluster allocated) served by `bin/ferry serve` and by `qemu-nbd`, in
# one run, measured with qemu-img bench and nbdcopy. Prints a Markdown table with Ferry/qemu-nbd ratios.
# With --format qcow2 one more line writes 512 MiB into a new, empty qcow2 image (every write allocates
# clusters), since the converted image only ever overwrites clusters in place.
#
# Content: random bytes, copied afresh for each server; writes use a non-zero pattern (qemu-img bench
# writes zeroes by default, which would turn the next reads into reads of zero data).
# Caching, the same for both servers: the image is written before serving, so it sits in the page cache, and both
# servers do buffered I/O on it (qemu-nbd --cache=writeback --aio=threads, its defaults; Ferry's RawImage
# uses pread/pwrite without O_DIRECT). qemu-img bench runs with -t none: for an NBD target that only
# affects its own block layer (no client-side cache), so every request reaches the server.
# "4 KiB random" is qemu-img bench with a step of 40009 blocks (prime, coprime to the block count): a
# permutation of the image's 4 KiB blocks, since qemu-img bench has no random mode.
#
# nbdcopy runs once untimed against each server before its timed runs (both servers alike): the timed
# runs then measure a warmed-up JVM rather than the C2 compiler, which otherwise competes for the 2 cores.
#
# Usage: bench/nbd-serve.sh [--format raw|qcow2] [WORKDIR]   (needs scripts/build.sh first; 2-4 minutes)
# Environment: REPEATS (best of N per line, default 3), FERRY (the launcher, default bin/ferry).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
format=raw
if [ "${1:-}" = --format ]; then
  format=${2:?--format needs raw or qcow2}; shift 2
fi
case $format in raw|qcow2) ;; *) echo "nbd-serve.sh: unsupported --format: $format (raw, qcow2)" >&2; exit 2 ;; esac
work=${1:-$(mktemp -d /tmp/nbd-bench.XXXXXX)}
mkdir -p "$work"
ferry=${FERRY:-$root/bin/ferry}
source="$work/bench.src"   # random bytes, never served: each server pass starts from a copy of it
raw="$work/bench.raw"
size=$((1024 * 1024 * 1024))
repeats=${REPEATS:-3}
[ -n "${FERRY:-}" ] || [ -f "$root/cli/target/ferry.jar" ] || { echo "nbd-serve.sh: build first: scripts/build.sh" >&2; exit 1; }
for tool in qemu-img qemu-nbd nbdcopy; do command -v $tool >/dev/null || { echo "nbd-serve.sh: $tool missing" >&2; exit 1; }; done

if [ ! -f "$source" ] || [ "$(stat -c %s "$source")" != $size ]; then
  head -c $size /dev/urandom > "$source"
fi
image=$raw
[ "$format" = qcow2 ] && image="$work/bench.qcow2"
# The write tests change the image, so every server gets a fresh copy of the same random content
# (raw: a copy; qcow2: converted, so every cluster is allocated and holds data).
fresh_image() {
  rm -f "$image"
  case $format in
    raw) cp "$source" "$raw" ;;
    qcow2) qemu-img convert -f raw -O qcow2 "$source" "$image" ;;
  esac
}

server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; fi; }
trap stop_server EXIT

start_server() {   # $1 = ferry|qemu-nbd ; $2 = socket ; $3 = image (default: the benchmark image)
  local served=${3:-$image}
  rm -f "$2"
  case $1 in
    ferry) "$ferry" serve --image "$served" --format "$format" --socket "$2" --export bench >"$work/ferry.log" 2>&1 & ;;
    qemu-nbd) qemu-nbd -f "$format" -x bench -k "$2" --persistent --cache=writeback --aio=threads --shared=16 "$served" >"$work/qemu-nbd.log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do [ -S "$2" ] && return 0; sleep 0.1; done
  echo "nbd-serve.sh: $1 did not start" >&2; exit 1
}

# seconds for one qemu-img bench run: $1 uri, then bench args
bench_seconds() {
  local uri=$1; shift
  qemu-img bench -f raw -t none "$@" "$uri" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p'
}

# best (lowest) of $repeats runs of a command printing seconds
best() { local b=; for _ in $(seq "$repeats"); do local s; s=$("$@"); if [ -z "$b" ] || awk "BEGIN{exit !($s < $b)}"; then b=$s; fi; done; echo "$b"; }

nbdcopy_seconds() {
  local start end; start=$(date +%s.%N); nbdcopy "$1" null: ; end=$(date +%s.%N)
  awk "BEGIN{printf \"%.3f\", $end - $start}"
}

declare -A result
tests=(
  "seq-read-1M-qd1|MiB/s|1024|-c 1024 -d 1 -s 1M"
  "seq-read-1M-qd16|MiB/s|2048|-c 2048 -d 16 -s 1M"
  "seq-write-1M-qd1|MiB/s|1024|-w --pattern=165 -c 1024 -d 1 -s 1M"
  "seq-write-1M-qd16|MiB/s|2048|-w --pattern=165 -c 2048 -d 16 -s 1M"
  "rand-read-4K-qd1|IOPS|50000|-c 50000 -d 1 -s 4K -S $((4096 * 40009))"
  "rand-read-4K-qd16|IOPS|100000|-c 100000 -d 16 -s 4K -S $((4096 * 40009))"
  "rand-write-4K-qd1|IOPS|50000|-w --pattern=165 -c 50000 -d 1 -s 4K -S $((4096 * 40009))"
  "rand-write-4K-qd16|IOPS|100000|-w --pattern=165 -c 100000 -d 16 -s 4K -S $((4096 * 40009))"
)
for server in qemu-nbd ferry; do
  sock="$work/$server.sock"
  fresh_image
  start_server $server "$sock"
  uri="nbd+unix:///bench?socket=$sock"
  for t in "${tests[@]}"; do
    IFS='|' read -r name unit count args <<<"$t"
    # shellcheck disable=SC2086
    secs=$(best bench_seconds "$uri" $args)
    value=$(awk "BEGIN{printf \"%.0f\", $count / $secs}")   # MiB/s for 1 MiB requests, IOPS for 4 KiB
    result[$server,$name]=$value
    echo "$server $name: $value $unit" >&2
  done
  nbdcopy_seconds "$uri" >/dev/null   # untimed warm-up, see the header
  secs=$(best nbdcopy_seconds "$uri")
  result[$server,nbdcopy-to-null]=$(awk "BEGIN{printf \"%.0f\", 1024 / $secs}")
  echo "$server nbdcopy-to-null: ${result[$server,nbdcopy-to-null]} MiB/s" >&2
  stop_server
  if [ "$format" = qcow2 ]; then
    # Allocating writes: a new, empty image per run, so every 1 MiB write allocates 16 clusters.
    fresh="$work/alloc.qcow2"
    alloc_seconds() {   # runs in a command substitution: starts and stops its own server
      rm -f "$fresh"; qemu-img create -f qcow2 "$fresh" 1G >/dev/null
      start_server "$server" "$sock" "$fresh"
      bench_seconds "$uri" -w --pattern=165 -c 512 -d 16 -s 1M
      stop_server
    }
    secs=$(best alloc_seconds)
    result[$server,alloc-write-1M-qd16]=$(awk "BEGIN{printf \"%.0f\", 512 / $secs}")
    echo "$server alloc-write-1M-qd16: ${result[$server,alloc-write-1M-qd16]} MiB/s" >&2
  fi
done

extra=("nbdcopy-to-null|MiB/s||")
[ "$format" = qcow2 ] && extra+=("alloc-write-1M-qd16|MiB/s||")
echo "format=$format"
echo
echo "| test | unit | qemu-nbd | ferry | ferry/qemu-nbd |"
echo "| --- | --- | ---: | ---: | ---: |"
for t in "${tests[@]}" "${extra[@]}"; do
  IFS='|' read -r name unit _ _ <<<"$t"
  q=${result[qemu-nbd,$name]}; f=${result[ferry,$name]}
  echo "| $name | $unit | $q | $f | $(awk "BEGIN{printf \"%.2f\", $f / $q}") |"
done
