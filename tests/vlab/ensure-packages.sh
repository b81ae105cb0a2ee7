#!/usr/bin/env bash
# Installs the Debian packages the virtual lab needs, and only those missing.
# QEMU runs the guest; busybox-static is the guest's whole userland; cpio packs the initramfs;
# xz-utils unpacks the kernel image; libusb-1.0-0 and libudev1 are copied into the guest for the
# management port (fpgaaccel bmc).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(qemu-system-x86 busybox-static cpio xz-utils libusb-1.0-0 libudev1)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  die "missing Debian packages: ${missing[*]}; install them with 'apt-get install ${missing[*]}' (as root)."
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# apt's own lock wait is bounded; the update is skipped when the lists are fresh enough to resolve.
if ! timeout 600 apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null 2>&1; then
  timeout 300 apt-get update -qq -o DPkg::Lock::Timeout=120 || die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list."
  timeout 600 apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed; run it by hand to see why."
fi
