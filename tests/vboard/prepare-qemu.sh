#!/usr/bin/env bash
# prepare-qemu.sh: finds a QEMU that has the vfio-user client device (vfio-user-pci, QEMU 10.1 and
# later) and prints the root it runs in: "/" for the system's own QEMU, or the folder of a cached
# Debian trixie root holding trixie-backports' QEMU, run as 'chroot ROOT qemu-system-x86_64'.
# The host's own libc and packages are never touched: the trixie root is a separate tree made by
# debootstrap (the only host package this may install, with apt-get, as root).
#   VBOARD_QEMU_ROOT     use this root (or "/") without looking further
#   VBOARD_MIRROR        the Debian mirror for the trixie root (default http://deb.debian.org/debian)
# Every step is bounded: debootstrap 900 s, apt-get update 300 s, apt-get install 900 s.
set -euo pipefail
source "$(dirname "$0")/../vlab/lib.sh"

minimum=10.1
qemu=qemu-system-x86_64

# qemu_ok ROOT: the QEMU in ROOT is at least $minimum and offers vfio-user-pci. Bounded: a QEMU
# that hangs while listing devices is no QEMU to use.
qemu_ok() {
  local root=$1 run=()
  [ "$root" = / ] || run=(chroot "$root")
  local version
  version=$(timeout 30 "${run[@]}" "$qemu" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\.[0-9]*\).*/\1/p' | head -1)
  [ -n "$version" ] || return 1
  [ "$(printf '%s\n%s\n' "$minimum" "$version" | sort -V | head -1)" = "$minimum" ] || return 1
  timeout 30 "${run[@]}" "$qemu" -machine none -device help 2>/dev/null | grep -q '"vfio-user-pci"'
}

if [ -n "${VBOARD_QEMU_ROOT:-}" ]; then
  qemu_ok "$VBOARD_QEMU_ROOT" || die "VBOARD_QEMU_ROOT=$VBOARD_QEMU_ROOT holds no $qemu $minimum or later with vfio-user-pci."
  echo "$VBOARD_QEMU_ROOT"
  exit 0
fi

if command -v "$qemu" >/dev/null 2>&1 && qemu_ok /; then
  echo /
  exit 0
fi

root="$CACHE_DIR/qemu-root"
if [ -f "$root/.ready" ] && qemu_ok "$root"; then
  echo "$root"
  exit 0
fi

log "the system QEMU is older than $minimum or lacks vfio-user-pci; making a Debian trixie root with trixie-backports' QEMU in $root"
[ "$(id -u)" = 0 ] || die "making the trixie root needs root (debootstrap and chroot); run 'make test-vboard' as root, or set VBOARD_QEMU_ROOT to a root holding $qemu $minimum or later."
if ! command -v debootstrap >/dev/null 2>&1; then
  command -v apt-get >/dev/null || die "debootstrap is missing and there is no apt-get to install it; install Debian package debootstrap."
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 600 apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 debootstrap >/dev/null 2>&1; then
    timeout 300 apt-get update -qq -o DPkg::Lock::Timeout=120 || die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list."
    timeout 600 apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 debootstrap >/dev/null \
      || die "apt-get install debootstrap failed; run it by hand to see why."
  fi
fi

mirror=${VBOARD_MIRROR:-http://deb.debian.org/debian}
work="$root.tmp"
# A half-made root from an interrupted run is thrown away; --one-file-system keeps rm inside it.
rm -rf --one-file-system "$work" "$root"
mkdir -p "$(dirname "$root")"
start=$SECONDS
log "debootstrap --variant=minbase trixie (bounded: 900 s)"
timeout 900 debootstrap --variant=minbase trixie "$work" "$mirror" > "$CACHE_DIR/debootstrap.log" 2>&1 \
  || die "debootstrap trixie failed after $((SECONDS - start)) s; see $CACHE_DIR/debootstrap.log (the mirror is $mirror, VBOARD_MIRROR overrides it)."

cat > "$work/etc/apt/sources.list" <<EOF
deb $mirror trixie main
deb $mirror trixie-backports main
EOF
# The chroot resolves the mirror's name with the host's resolver configuration.
cp -L /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true
in_root() { timeout "$1" chroot "$work" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "${@:2}"; }
log "apt-get update in the trixie root (bounded: 300 s)"
in_root 300 apt-get update -qq > "$CACHE_DIR/qemu-root-apt.log" 2>&1 \
  || die "apt-get update in the trixie root failed; see $CACHE_DIR/qemu-root-apt.log."
log "apt-get install -t trixie-backports qemu-system-x86 in the trixie root (bounded: 900 s)"
in_root 900 apt-get install -y -qq --no-install-recommends -t trixie-backports qemu-system-x86 qemu-system-data >> "$CACHE_DIR/qemu-root-apt.log" 2>&1 \
  || die "installing qemu-system-x86 from trixie-backports failed; see $CACHE_DIR/qemu-root-apt.log."
in_root 60 apt-get clean >/dev/null 2>&1 || true
qemu_ok "$work" || die "the trixie root's QEMU is not $minimum or later with vfio-user-pci ($(chroot "$work" "$qemu" --version | head -1))."
touch "$work/.ready"
mv "$work" "$root"
log "trixie root ready in $((SECONDS - start)) s: $(chroot "$root" "$qemu" --version | head -1)"
echo "$root"
