#!/usr/bin/env bash
# build-initramfs.sh KERNEL_DIR PROGRAMS_DIR OUT: packs the guest's root file system, an uncompressed
# newc cpio (the kernel unpacks it faster than it would decompress it under TCG):
#   /init                 tests/vlab/init
#   /bin/busybox          the static busybox, the whole userland
#   /lib/modules/*.ko     the VFIO and USB modules, loaded by /init in the order of /etc/vlab/modules
#   /opt/vlab/vlab-guest  the published conformance program and fpgaaccel, plus the shared
#   /opt/vlab/fpgaaccel   libraries and the dynamic loader that ldd lists for them
#   libusb-1.0.so.0,      loaded at run time (dlopen) for the management port, so ldd does not list
#   libudev.so.1          them: copied by soname, with what they link
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || die "usage: build-initramfs.sh KERNEL_DIR PROGRAMS_DIR OUT"
kdir=$1 programs=$2 out=$3
release=$(cat "$kdir/release")
moddir="$kdir/root/lib/modules/$release/kernel"

# Load order: each module after the ones it depends on (checked below from .modinfo).
# In Debian's 6.1 kernels all of these are modules (CONFIG_VFIO*=m, CONFIG_IRQ_BYPASS_MANAGER=m,
# CONFIG_USB=m, CONFIG_USB_XHCI_PCI=m, CONFIG_USB_SERIAL_FTDI_SIO=m). The USB ones carry the BMC's
# port: QEMU's usb-serial on qemu-xhci, which ftdi_sio binds (fpgaaccel bmc detaches it).
modules=(drivers/vfio/vfio.ko drivers/vfio/vfio_iommu_type1.ko drivers/vfio/vfio_virqfd.ko
         virt/lib/irqbypass.ko drivers/vfio/pci/vfio-pci-core.ko drivers/vfio/pci/vfio-pci.ko
         drivers/usb/common/usb-common.ko drivers/usb/core/usbcore.ko drivers/usb/host/xhci-hcd.ko
         drivers/usb/host/xhci-pci.ko drivers/usb/serial/usbserial.ko drivers/usb/serial/ftdi_sio.ko)

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox is not installed; install Debian package busybox-static."
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked; install Debian package busybox-static (not busybox)."
need cpio cpio

stage=$(mktemp -d /tmp/vlab-initramfs.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,etc/vlab,lib/modules,opt/vlab}
cp "$VLAB_DIR/init" "$stage/init"
cp "$busybox" "$stage/bin/busybox"
# A real host has account files; .NET's Environment.UserName throws without one (fpgaaccel
# doctor names the user in its fixes).
echo 'root:x:0:0:root:/tmp:/bin/sh' > "$stage/etc/passwd"
echo 'root:x:0:' > "$stage/etc/group"
# The kernel opens /dev/console for /init before devtmpfs is mounted.
[ "$(id -u)" = 0 ] && mknod -m 600 "$stage/dev/console" c 5 1

loaded=" "
for m in "${modules[@]}"; do
  [ -f "$moddir/$m" ] || die "kernel $release has no $m; a kernel with CONFIG_VFIO_PCI=m, CONFIG_USB_XHCI_PCI=m and CONFIG_USB_SERIAL_FTDI_SIO=m is needed."
  name=$(basename "$m" .ko)
  deps=$(LC_ALL=C grep -aoP 'depends=[^\x00]*' "$moddir/$m" | head -1 | cut -d= -f2 | tr ',' ' ')
  for d in $deps; do
    [[ "$loaded" == *" ${d//-/_} "* ]] || die "module $name needs $d, which is not loaded before it; fix the order in build-initramfs.sh."
  done
  loaded+="${name//-/_} "
  cp "$moddir/$m" "$stage/lib/modules/"
  echo "$(basename "$m")" >> "$stage/etc/vlab/modules"
done

# copy_with_libs FILE: FILE's shared libraries and the dynamic loader, at the paths ldd names.
copy_with_libs() {
  # ldd lines: "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
  for lib in $(ldd "$1" | grep -oE '/[^ ]+\.so[^ ]*'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
}

for program in vlab-guest fpgaaccel; do
  [ -x "$programs/$program" ] || die "$programs/$program is missing; tests/vlab/vlab.sh publishes it."
  cp "$programs/$program" "$stage/opt/vlab/"
  copy_with_libs "$programs/$program"
done

# .NET loads libusb with dlopen by its soname, so the ldd step above never sees it, nor the libudev it
# enumerates devices with (no udevd is needed: libudev reads sysfs itself).
for soname in libusb-1.0.so.0 libudev.so.1; do
  lib=$(ldconfig -p 2>/dev/null | sed -n "s|^[[:space:]]*$soname (libc6,x86-64) => ||p" | head -1)
  [ -n "$lib" ] && [ -f "$lib" ] || die "$soname is not installed on the host; install Debian packages libusb-1.0-0 and libudev1 (tests/vlab/ensure-packages.sh does, as root)."
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
  copy_with_libs "$lib"
done
echo "${VLAB_GUEST_TIMEOUT:-240}" > "$stage/etc/vlab/timeout"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
