#!/usr/bin/env bash
# extract-vmlinux.sh BZIMAGE OUT: writes the uncompressed ELF kernel inside a bzImage to OUT.
# The logic of the kernel tree's scripts/extract-vmlinux: find the payload's compression magic,
# decompress from there (the decompressor stops at the payload's end and complains about the
# trailing bytes, which is expected), and keep the first result that is an ELF file.
# The ELF kernel has a PVH entry point, so QEMU boots it straight through qboot, skipping
# the bzImage's own decompression, which is slow under TCG.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || die "usage: extract-vmlinux.sh BZIMAGE OUT"
image=$1 out=$2
[ -f "$image" ] || die "no kernel image at $image"

is_elf() { [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

try() { # try MAGIC(grep -P) COMMAND...
  local magic=$1; shift
  local offset
  for offset in $(LC_ALL=C grep -obUaP "$magic" "$image" | cut -d: -f1 | head -5); do
    tail -c "+$((offset + 1))" "$image" | "$@" > "$out.tmp" 2>/dev/null || true
    if [ -s "$out.tmp" ] && is_elf "$out.tmp"; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
  return 1
}

try '\xfd7zXZ\x00' xz -dc ||
  try '\x28\xb5\x2f\xfd' zstd -dc ||
  try '\x1f\x8b\x08' gzip -dc ||
  try '\x02\x21\x4c\x18' lz4 -dc ||
  die "found no xz, zstd, gzip or lz4 payload holding an ELF kernel in $image; install xz-utils/zstd/lz4, or the kernel uses another compression."
