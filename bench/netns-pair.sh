# Sourced by the benchmarks: two network namespaces joined by a veth pair, the "hosts" a benchmark migrates between.
#   netns_pair_up NAME IF NET    makes NAME-src and NAME-dst (veth IF-src NET.1/24, IF-dst NET.2/24), sets
#                                NS_SRC and NS_DST, and removes both (killing only processes inside them) on exit.
# Shaping (tc) is the benchmark's own business.
netns_pair_cleanup() {
  ip netns pids "$NS_SRC" 2>/dev/null | xargs -r kill -9 2>/dev/null || true   # only processes in our namespaces
  ip netns pids "$NS_DST" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS_SRC" 2>/dev/null || true
  ip netns del "$NS_DST" 2>/dev/null || true
}

netns_pair_up() {
  local name=$1 link=$2 net=$3
  NS_SRC=$name-src NS_DST=$name-dst
  trap netns_pair_cleanup EXIT
  trap 'exit 130' INT TERM
  netns_pair_cleanup
  ip netns add "$NS_SRC"
  ip netns add "$NS_DST"
  ip link add "$link-src" netns "$NS_SRC" type veth peer name "$link-dst" netns "$NS_DST"
  ip -n "$NS_SRC" addr add "$net.1/24" dev "$link-src"
  ip -n "$NS_DST" addr add "$net.2/24" dev "$link-dst"
  for ns in "$NS_SRC" "$NS_DST"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_SRC" link set "$link-src" up
  ip -n "$NS_DST" link set "$link-dst" up
  ip netns exec "$NS_SRC" bash -c "exec 3<>/dev/tcp/$net.2/9" 2>/dev/null || true   # warm ARP; refused is fine
}
