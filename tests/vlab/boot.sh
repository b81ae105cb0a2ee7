#!/usr/bin/env bash
# boot.sh KERNEL_DIR INITRAMFS: boots the guest under QEMU (TCG, q35, emulated VT-d, edu), streams
# its serial console to stdout, and exits 0 only when the conformance program's closing line
# said "N passed, 0 failed" with N > 0 and /init reported success through isa-debug-exit.
# The output ends with that closing line: what the guest prints after it (nothing, normally)
# is dropped.
#   VLAB_BOOT_TIMEOUT  seconds before QEMU is killed (default 300)
#   VLAB_BMC_MODEL     an fpgaaccel to serve the BMC model with ('fpgaaccel bmc model --socket'); when
#                      set, QEMU gets an xHCI controller and a usb-serial (an FT232) whose UART is that
#                      socket, and the guest is told the model's serial (vlab.bmc_serial=) to check
#   VLAB_BMC_SERIAL    the serial the model answers (default VLAB-BMC-0001)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || die "usage: boot.sh KERNEL_DIR INITRAMFS"
kdir=$1 initramfs=$2
timeout_s=${VLAB_BOOT_TIMEOUT:-300}
qemu=qemu-system-x86_64
need "$qemu" qemu-system-x86
qboot=/usr/share/qemu/qboot.rom
[ -f "$qboot" ] || die "$qboot is missing; install Debian package qemu-system-data."

result=$(mktemp /tmp/vlab-result.XXXXXX)
qemu_err=$(mktemp /tmp/vlab-qemu-err.XXXXXX)
bmc_dir= bmc_pid=
cleanup() {
  if [ -n "$bmc_pid" ]; then
    kill "$bmc_pid" 2>/dev/null || true
    wait "$bmc_pid" 2>/dev/null || true
    [ -s "$bmc_dir/model.log" ] && log "BMC model: $(tail -1 "$bmc_dir/model.log")"
  fi
  rm -f "$result" "$qemu_err"
  [ -n "$bmc_dir" ] && rm -rf "$bmc_dir"
}
trap cleanup EXIT

# The BMC model listens first: QEMU's chardev connects to it as a client when the VM starts, and the
# usb-serial device is attached while that connection lasts.
bmc_args=() append_bmc=
if [ -n "${VLAB_BMC_MODEL:-}" ]; then
  bmc_serial=${VLAB_BMC_SERIAL:-VLAB-BMC-0001}
  bmc_dir=$(mktemp -d /tmp/vlab-bmc.XXXXXX)
  "$VLAB_BMC_MODEL" bmc model --socket "$bmc_dir/bmc.sock" --serial "$bmc_serial" >"$bmc_dir/model.log" 2>&1 &
  bmc_pid=$!
  for _ in $(seq 1 300); do
    [ -S "$bmc_dir/bmc.sock" ] && break
    kill -0 "$bmc_pid" 2>/dev/null || die "the BMC model exited before listening: $(cat "$bmc_dir/model.log")"
    sleep 0.1
  done
  [ -S "$bmc_dir/bmc.sock" ] || die "the BMC model did not listen on $bmc_dir/bmc.sock within 30 s: $(cat "$bmc_dir/model.log")"
  log "BMC model (serial $bmc_serial) serving $bmc_dir/bmc.sock for QEMU's usb-serial"
  bmc_args=(-device qemu-xhci,id=xhci -chardev "socket,id=bmc,path=$bmc_dir/bmc.sock" -device usb-serial,chardev=bmc,bus=xhci.0)
  append_bmc=" vlab.bmc_serial=$bmc_serial"
fi

# intel-iommu comes before the devices it translates. isa-debug-exit lets /init end QEMU with a
# status. KVM is not assumed (no vmx/svm on CI machines): TCG, with -cpu max for the
# instructions .NET's JIT likes to use.
args=(
  -machine q35 -accel tcg -cpu max -m 1024 -smp 2
  -nodefaults -display none -monitor none -no-reboot -serial stdio
  -device intel-iommu,intremap=on
  -device edu
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  "${bmc_args[@]}"
  -bios "$qboot" -kernel "$kdir/vmlinux" -initrd "$initramfs"
  -append "console=ttyS0 intel_iommu=on iommu=pt quiet loglevel=4 panic=-1$append_bmc"
)
log "booting the guest: $qemu ${args[*]} (killed after ${timeout_s} s)"
start=$SECONDS
set +e
timeout --kill-after=5 "$timeout_s" "$qemu" "${args[@]}" </dev/null 2>"$qemu_err" |
  {
    closing=
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line%$'\r'}
      [ -n "$closing" ] && continue
      printf '%s\n' "$line"
      if [[ "$line" =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
        closing=$line
      fi
    done
    printf '%s\n' "$closing" > "$result"
  }
statuses=("${PIPESTATUS[@]}")
set -e
qemu_status=${statuses[0]}
closing=$(cat "$result")

why=
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
  why="QEMU was killed after ${timeout_s} s (raise VLAB_BOOT_TIMEOUT if the machine is slow)"
elif [ -s "$qemu_err" ] && [ "$qemu_status" != 1 ] && [ "$qemu_status" != 3 ]; then
  why="QEMU exited with $qemu_status: $(head -c 2000 "$qemu_err")"
elif [ -z "$closing" ]; then
  why="the guest never printed its closing 'N passed, N failed' line (QEMU exit $qemu_status)"
elif [[ ! "$closing" =~ ^[1-9][0-9]*\ passed,\ 0\ failed$ ]]; then
  why="checks failed in the guest"
elif [ "$qemu_status" != 1 ]; then
  # isa-debug-exit turns the byte /init writes into (byte << 1) | 1; 1 is the byte 0.
  why="the guest's /init did not report success (QEMU exit $qemu_status)"
fi
if [ -n "$why" ]; then
  if [ -s "$qemu_err" ] && [[ "$why" != "QEMU exited with"* ]]; then
    why+="; QEMU's standard error: $(head -c 2000 "$qemu_err")"
  fi
  die "virtual lab failed after $((SECONDS - start)) s: $why"
fi
