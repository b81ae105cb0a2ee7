#!/usr/bin/env bash
# The virtual lab (make test-vlab): boots a real Linux kernel under QEMU with an emulated IOMMU
# (VT-d) and QEMU's edu PCI device, and runs the project's VFIO layer against it in the guest; and
# QEMU's usb-serial (an FT232 on xHCI) whose UART is the BMC model served on the host, which the
# guest reaches with 'fpgaaccel bmc' through the kernel's USB stack and libusb.
# Steps, each cached under .vlab-cache/ and redone only when its inputs change:
#   1. Debian packages (qemu-system-x86, busybox-static, cpio, xz-utils, libusb-1.0-0, libudev1),
#      installed when missing
#   2. the guest kernel (apt-get download, dpkg -x, ELF kernel extracted)  prepare-kernel.sh
#   3. the guest program and fpgaaccel, published self-contained, trimmed,  (here)
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
guest="$CACHE_DIR/guest"
sources_hash=$(cd "$REPO_DIR" &&
  find interop firmware-iface hw-sim driver tests/FpgaAccel.VlabGuest Directory.Build.props Directory.Packages.props \
    -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.targets' \) \
    -not -path '*/bin/*' -not -path '*/obj/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$guest/.sources" 2>/dev/null)" != "$sources_hash" ] || [ ! -x "$guest/vlab-guest" ] || [ ! -x "$guest/fpgaaccel" ]; then
  rm -rf "$guest"
  for project in tests/FpgaAccel.VlabGuest/FpgaAccel.VlabGuest.csproj driver/FpgaAccel.Cli/FpgaAccel.Cli.csproj; do
    log "publishing $project (self-contained, trimmed, single-file, ReadyToRun, linux-x64)"
    (cd "$REPO_DIR" && timeout 900 "$DOTNET" publish "$project" -c Release -r linux-x64 --self-contained \
        -p:PublishTrimmed=true -p:PublishSingleFile=true -p:PublishReadyToRun=true \
        -p:DebugType=none -p:GenerateDocumentationFile=false -o "$guest" -v quiet -nologo) >&2 \
      || die "dotnet publish $project failed (see above)."
  done
  echo "$sources_hash" > "$guest/.sources"
fi

initramfs="$CACHE_DIR/initramfs.cpio"
"$VLAB_DIR/build-initramfs.sh" "$kdir" "$guest" "$initramfs"
VLAB_BMC_MODEL="$guest/fpgaaccel" "$VLAB_DIR/boot.sh" "$kdir" "$initramfs"
