#!/usr/bin/env bash
# Puts a guest kernel into the cache: Debian's linux-image package fetched with apt-get download
# (never installed), unpacked with dpkg -x, its ELF kernel extracted for a PVH boot, and the
# VFIO modules checked. Reruns reuse what is there and need no network.
#   VLAB_KERNEL_PACKAGE  the package (default: what linux-image-amd64 depends on today)
# Prints the cache folder of the kernel on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kdir="$CACHE_DIR/kernel"
mkdir -p "$kdir"

deb=$(ls "$kdir"/linux-image-*.deb 2>/dev/null | head -1 || true)
if [ -n "${VLAB_KERNEL_PACKAGE:-}" ] && [ -n "$deb" ] && [[ "$(basename "$deb")" != "${VLAB_KERNEL_PACKAGE}_"* ]]; then
  rm -rf "$kdir" && mkdir -p "$kdir" && deb=
fi
if [ -z "$deb" ]; then
  resolve() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1; }
  package=${VLAB_KERNEL_PACKAGE:-$(resolve)}
  if [ -z "$package" ] && [ "$(id -u)" = 0 ]; then
    log "apt knows no linux-image-amd64 yet; running apt-get update"
    timeout 300 apt-get update -qq -o DPkg::Lock::Timeout=120 || die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list."
    package=$(resolve)
  fi
  [ -n "$package" ] || die "cannot resolve Debian's kernel package (apt-cache depends linux-image-amd64 gave nothing); run 'apt-get update', or set VLAB_KERNEL_PACKAGE=linux-image-6.1.0-NN-amd64."
  log "downloading $package (apt-get download, not installed)"
  tmp=$(mktemp -d /tmp/vlab-kernel.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  # apt's sandbox user must be able to write where it downloads, hence /tmp first.
  chmod 777 "$tmp"
  (cd "$tmp" && timeout 600 apt-get download -qq "$package") \
    || die "apt-get download $package failed; run 'apt-get update' and check that the package exists ('apt-cache policy $package')."
  mv "$tmp"/*.deb "$kdir/"
  deb=$(ls "$kdir"/linux-image-*.deb | head -1)
fi

if [ ! -f "$kdir/root/.unpacked" ] || [ "$deb" -nt "$kdir/root/.unpacked" ]; then
  log "unpacking $(basename "$deb")"
  rm -rf "$kdir/root" "$kdir/vmlinux"
  dpkg -x "$deb" "$kdir/root"
  touch "$kdir/root/.unpacked"
fi

config=$(ls "$kdir"/root/boot/config-* | head -1)
release=${config##*/config-}
echo "$release" > "$kdir/release"
for option in CONFIG_PVH CONFIG_INTEL_IOMMU CONFIG_VFIO CONFIG_VFIO_PCI CONFIG_VFIO_IOMMU_TYPE1 CONFIG_DEVPORT; do
  grep -Eq "^$option=(y|m)$" "$config" || die "kernel $release lacks $option (see $config); choose another VLAB_KERNEL_PACKAGE."
done

if [ ! -f "$kdir/vmlinux" ]; then
  log "extracting the ELF kernel from vmlinuz-$release"
  "$VLAB_DIR/extract-vmlinux.sh" "$kdir/root/boot/vmlinuz-$release" "$kdir/vmlinux"
fi
echo "$kdir"
