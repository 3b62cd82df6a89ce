#!/usr/bin/env bash
# Builds the demo/test guest: a Debian kernel, a small busybox initramfs with the virtio modules
# needed for /dev/vda, and the ferry-disk workload (guest/README.md).
#
#   guest/build.sh [OUTDIR]        default OUTDIR: guest/out
#
# Outputs: OUTDIR/vmlinuz, OUTDIR/initramfs.cpio.gz, OUTDIR/ferry-disk, OUTDIR/kernel-version.
# Idempotent: does nothing when the outputs are newer than their inputs. Installs linux-image-amd64,
# busybox-static, gcc, cpio and kmod with apt-get when missing (needs root for that step only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log() { echo "guest/build.sh: $*" >&2; }

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in linux-image-amd64 busybox-static gcc libc6-dev cpio gzip kmod; do have_pkg "$p" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The newest installed kernel that has its modules.
kver=""
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V); do
  [ -f "/lib/modules/$k/modules.dep" ] && kver="$k"
done
[ -n "$kver" ] || { log "no kernel found: /boot/vmlinuz-* with /lib/modules/<version>/modules.dep"; exit 1; }
kernel="/boot/vmlinuz-$kver"
config="/boot/config-$kver"
moddir="/lib/modules/$kver"
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || busybox=/bin/busybox
[ -x "$busybox" ] || { log "no static busybox: install busybox-static"; exit 1; }

# Skip when every output is newer than every input.
inputs=("$here/build.sh" "$here/init" "$here/ferry-disk.c" "$kernel" "$busybox" "$moddir/modules.dep")
outputs=("$out/vmlinuz" "$out/initramfs.cpio.gz" "$out/ferry-disk" "$out/kernel-version")
fresh=1
for o in "${outputs[@]}"; do
  [ -f "$o" ] || { fresh=0; break; }
  for i in "${inputs[@]}"; do [ "$o" -nt "$i" ] || { fresh=0; break 2; }; done
done
if [ "$fresh" = 1 ] && [ "$(cat "$out/kernel-version")" = "$kver" ]; then
  log "up to date: $out (kernel $kver)"
  exit 0
fi

log "building into $out (kernel $kver)"
gcc -static -O2 -Wall -Wextra -o "$out/ferry-disk.tmp" "$here/ferry-disk.c"
mv "$out/ferry-disk.tmp" "$out/ferry-disk"

# The modules /dev/vda needs, unless built in (=y in the kernel config), with their dependencies,
# in load order (dependencies first), as modules.dep lists them.
builtin() { grep -q "^$1=y" "$config" 2>/dev/null; }
order=()
add_module() {   # $1: module path relative to moddir
  local m="$1" d
  for seen in "${order[@]:-}"; do [ "$seen" = "$m" ] && return 0; done
  for d in $(awk -v m="$m:" '$1 == m { for (i = 2; i <= NF; i++) print $i }' "$moddir/modules.dep"); do
    add_module "$d"
  done
  order+=("$m")
}
for pair in CONFIG_VIRTIO_PCI:virtio_pci CONFIG_VIRTIO_BLK:virtio_blk; do
  opt="${pair%%:*}" name="${pair#*:}"
  builtin "$opt" && continue
  path="$(awk -v n="/$name.ko" -F: 'index($1, n) && substr($1, length($1) - length(n) + 1) == n { print $1; exit }' "$moddir/modules.dep")"
  [ -n "$path" ] || { log "module not found: name=$name kernel=$kver"; exit 1; }
  add_module "$path"
done

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$out/ferry-disk" "$root/bin/ferry-disk"
cp "$here/init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox" "$root/bin/ferry-disk"
: > "$root/etc/ferry-modules"
for m in "${order[@]:-}"; do
  [ -n "$m" ] || continue
  base="$(basename "$m")"
  case "$base" in
    *.ko.xz) xz -dc "$moddir/$m" > "$root/lib/modules/${base%.xz}"; base="${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" > "$root/lib/modules/${base%.zst}"; base="${base%.zst}" ;;
    *) cp "$moddir/$m" "$root/lib/modules/$base" ;;
  esac
  echo "$base" >> "$root/etc/ferry-modules"
done
log "modules: $(tr '\n' ' ' < "$root/etc/ferry-modules")"
# A console node so that the kernel can open it before devtmpfs is mounted.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -9 > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$kernel" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$kver" > "$out/kernel-version"
log "done: $out/vmlinuz $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes) $out/ferry-disk"
