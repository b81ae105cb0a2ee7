#!/usr/bin/env bash
# The virtual lab (make test-vlab): boots a real Linux kernel under QEMU with an emulated IOMMU
# (VT-d) and QEMU's edu PCI device, and runs the project's VFIO layer against it in the guest; and
# QEMU's usb-serial (an FT232 on xHCI) whose UART is the BMC model served on the host, which the
# guest reaches with 'fpgaaccel bmc' through the kernel's USB stack and libusb.
# Steps, each cached under .vlab-cache/ and redone only when its inputs change:
#   1. Debian packages (qemu-system-x86, busybox-static, cpio, xz-utils, libusb-1.0-0, libudev1),
#      installed when missing
#   2. the guest kernel (apt-get download, dpkg -x, ELF kernel extracted)  prepare-kernel.sh
#   3. the guest program and fpgaaccel, published self-contained, trimmed,  publish-guest.sh
#      single-file, ReadyToRun (precompiled: the JIT is slow under TCG)
#   4. the initramfs                                                        build-initramfs.sh
#   5. the BMC model on a socket (the published fpgaaccel, on the host), and  boot.sh
#      the boot, bounded by VLAB_BOOT_TIMEOUT
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DOTNET=${DOTNET:-dotnet}
command -v "$DOTNET" >/dev/null || die "the .NET 10 SDK ('$DOTNET') is not on PATH; install it first."

"$VLAB_DIR/ensure-packages.sh"
kdir=$("$VLAB_DIR/prepare-kernel.sh")

# The programs are republished only when a source they are built from changed: the conformance
# program and the fpgaaccel tool (its doctor command runs in the guest too).
guest=$(DOTNET="$DOTNET" "$VLAB_DIR/publish-guest.sh")

initramfs="$CACHE_DIR/initramfs.cpio"
"$VLAB_DIR/build-initramfs.sh" "$kdir" "$guest" "$initramfs"
VLAB_BMC_MODEL="$guest/fpgaaccel" "$VLAB_DIR/boot.sh" "$kdir" "$initramfs"
