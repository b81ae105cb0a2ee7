#!/usr/bin/env bash
# The virtual board (make test-vboard): the FA-1 model served as a PCI device over vfio-user by
# 'fpgaaccel model serve' on this host, QEMU's vfio-user-pci presenting it to a guest kernel behind an
# emulated VT-d, and the real fpgaaccel in the guest driving it with the board backend: setup, doctor,
# info, selftest, stress and jitter, then a raw-VFIO probe; then the board's BMC (served beside the model,
# reached through QEMU's usb-serial) power-cycles the FA-1 under the driver. The model's oracle stays on
# this side and joins the verdict. Steps, each cached under .vlab-cache/ and redone only when its inputs change:
#   1. Debian packages for the guest (busybox-static, cpio, xz-utils)       ../vlab/ensure-packages.sh
#   2. the guest kernel, shared with the virtual lab                        ../vlab/prepare-kernel.sh
#   3. a QEMU with vfio-user-pci: the system's if 10.1 or later, else a     prepare-qemu.sh
#      cached Debian trixie root with trixie-backports' QEMU 11
#   4. the guest program and fpgaaccel, published as the virtual lab does    (here; same cache)
#   5. the initramfs: the lab's, with this folder's /init laid over it      ../vlab/build-initramfs.sh
#   6. server, boot and verdict, every wait bounded                          (here)
# One PASS/FAIL line per check (the guest's and this host's), then the plain 'N passed, N failed'.
#   VBOARD_BOOT_TIMEOUT  seconds before QEMU is killed (default 900)
#   VBOARD_SMP           guest CPUs (default 1: on a 2-core host the other core is the server's; with 2 the
#                        guest's vCPUs and the model's threads contend, and doorbell-to-completion is ~10x slower)
set -euo pipefail
source "$(dirname "$0")/../vlab/lib.sh"
VBOARD_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'vboard: %s\n' "$*" >&2; }
die() { printf 'vboard: error: %s\n' "$*" >&2; exit 1; }

DOTNET=${DOTNET:-dotnet}
command -v "$DOTNET" >/dev/null || die "the .NET 10 SDK ('$DOTNET') is not on PATH; install it first."
boot_timeout=${VBOARD_BOOT_TIMEOUT:-900}
smp=${VBOARD_SMP:-1}
vendor=0x10ee device=0xfa01
artifacts="$REPO_DIR/artifacts/vboard"
mkdir -p "$artifacts"

"$VLAB_DIR/ensure-packages.sh"
kdir=$("$VLAB_DIR/prepare-kernel.sh")
qroot=$("$VBOARD_DIR/prepare-qemu.sh")
if [ "$qroot" = / ]; then
  run=()
else
  [ "$(id -u)" = 0 ] || die "running QEMU in the trixie root needs root (chroot); run 'make test-vboard' as root."
  run=(chroot "$qroot")
fi
log "QEMU: ${run[*]:-system} $(timeout 30 "${run[@]}" qemu-system-x86_64 --version | head -1)"

# Step 4: the guest program and fpgaaccel, published into the same cache as the virtual lab's (publish-guest.sh).
guest=$(DOTNET="$DOTNET" "$VLAB_DIR/publish-guest.sh")

# Step 5: the lab's initramfs (busybox, VFIO modules, the programs), then a second cpio archive the
# kernel unpacks after it, whose /init and /etc/vboard replace the lab's.
stage="$CACHE_DIR/vboard"
mkdir -p "$stage"
VLAB_GUEST_TIMEOUT=$((boot_timeout - 60)) "$VLAB_DIR/build-initramfs.sh" "$kdir" "$guest" "$stage/base.cpio"
overlay=$(mktemp -d /tmp/vboard-overlay.XXXXXX)
mkdir -p "$overlay/etc/vboard"
cp "$VBOARD_DIR/init" "$overlay/init"
echo "$vendor" > "$overlay/etc/vboard/vendor"
echo "$device" > "$overlay/etc/vboard/device"
echo "$((boot_timeout - 60))" > "$overlay/etc/vboard/timeout"
(cd "$overlay" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$stage/overlay.cpio"
rm -rf "$overlay"
cat "$stage/base.cpio" "$stage/overlay.cpio" > "$stage/initramfs.cpio.tmp" && mv "$stage/initramfs.cpio.tmp" "$stage/initramfs.cpio"

# Step 6. The socket, kernel and initramfs go where QEMU sees them: inside the trixie root when it runs there.
if [ "$qroot" = / ]; then
  work=$(mktemp -d /tmp/vboard.XXXXXX) inside=$work
else
  work=$(mktemp -d "$qroot/tmp/vboard.XXXXXX") inside=${work#"$qroot"}
fi
socket="$work/fa1.sock" bmc_socket="$work/bmc.sock"
[ ${#bmc_socket} -le 107 ] || die "the socket path $bmc_socket is longer than an AF_UNIX address takes (107 bytes); set VLAB_CACHE to a shorter folder."
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
ln "$kdir/vmlinux" "$work/vmlinux" 2>/dev/null || cp "$kdir/vmlinux" "$work/vmlinux"
ln "$stage/initramfs.cpio" "$work/initramfs.cpio" 2>/dev/null || cp "$stage/initramfs.cpio" "$work/initramfs.cpio"

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

# The board's BMC is served beside the FA-1 (--bmc-socket), its RESET wired to the served model (issue 14): QEMU's
# usb-serial carries it to the guest, whose 'vboard.bmc-reset' check power-cycles the FA-1 under the driver.
server_out="$artifacts/server.jsonl" server_err="$artifacts/server.log" trace="$artifacts/messages.trace"
"$guest/fpgaaccel" model serve --socket "$socket" --vendor-id "$vendor" --device-id "$device" --once --json --trace "$trace" \
  --bmc-socket "$bmc_socket" --bmc-serial VBOARD-BMC-0001 > "$server_out" 2> "$server_err" &
server_pid=$!
for _ in $(seq 300); do
  [ -S "$socket" ] && [ -S "$bmc_socket" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -S "$socket" ] && [ -S "$bmc_socket" ]; then
  pass "host.server-listening"
else
  fail "host.server-listening" "'fpgaaccel model serve' did not listen at $socket and $bmc_socket within 60 s: $(tail -c 1000 "$server_err")"
  finish
fi

# q35 with its RAM a shared memfd (QEMU passes it with every DMA_MAP, so the server maps guest RAM
# directly), VT-d with caching mode (QEMU needs it to see the guest's mappings), the FA-1 over vfio-user,
# isa-debug-exit for /init's verdict. TCG: no KVM on CI machines.
args=(
  -machine q35,memory-backend=mem -object memory-backend-memfd,id=mem,size=1G,share=on
  -accel tcg -cpu max -m 1G -smp "$smp"
  -nodefaults -display none -monitor none -no-reboot -serial stdio
  -device intel-iommu,intremap=on,caching-mode=on
  -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$inside/fa1.sock\",\"type\":\"unix\"}}"
  -device qemu-xhci,id=xhci -chardev "socket,id=bmc,path=$inside/bmc.sock" -device usb-serial,chardev=bmc,bus=xhci.0
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
  -bios /usr/share/qemu/qboot.rom -kernel "$inside/vmlinux" -initrd "$inside/initramfs.cpio"
  -append "console=ttyS0 intel_iommu=on iommu=pt quiet loglevel=4 panic=-1 vboard.bmc=1"
)
log "booting the guest: ${run[*]} qemu-system-x86_64 ${args[*]} (killed after ${boot_timeout} s)"
qemu_err="$artifacts/qemu.err" guest_out="$artifacts/guest.txt" jitter="$artifacts/jitter.json"
rm -f "$jitter"
start=$SECONDS
set +e
timeout --kill-after=5 "$boot_timeout" "${run[@]}" qemu-system-x86_64 "${args[@]}" </dev/null 2>"$qemu_err" |
  {
    closing= verdict_at=
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line%$'\r'}
      [ -n "$closing" ] && continue
      case "$line" in
        "VBOARD-MARK "*)
          # The host's oracle snapshot at each mark of the stress run: SIGUSR1 makes the server print one.
          kill -USR1 "$server_pid" 2>/dev/null
          echo "$line" ;;
        "VBOARD-JITTER-JSON "*)
          printf '%s\n' "${line#VBOARD-JITTER-JSON }" > "$jitter"
          echo "VBOARD-JITTER-JSON (${#line} bytes, saved to artifacts/vboard/jitter.json)" ;;
        *) printf '%s\n' "$line" ;;
      esac
      if [[ "$line" =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
        closing=$line verdict_at=$((SECONDS - start))
      fi
    done
    printf '%s\n%s\n' "$closing" "$verdict_at" > "$artifacts/closing"
  } | tee "$guest_out" | grep -v '^VBOARD-MARK \|^[0-9]* passed, [0-9]* failed$'
qemu_status=${PIPESTATUS[0]}
set -e
closing=$(sed -n 1p "$artifacts/closing") verdict_at=$(sed -n 2p "$artifacts/closing")

# The guest's own checks count in the verdict, then this host's.
guest_passed=$(grep -c '^PASS ' "$guest_out" || true) guest_failed=$(grep -c '^FAIL ' "$guest_out" || true)
passed=$((passed + guest_passed)) failed=$((failed + guest_failed))
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
  fail "host.guest-verdict" "QEMU was killed after ${boot_timeout} s (raise VBOARD_BOOT_TIMEOUT if the machine is slow)"
elif [ -z "$closing" ]; then
  fail "host.guest-verdict" "the guest never printed its closing line (QEMU exit $qemu_status): $(head -c 2000 "$qemu_err")"
elif [ "$closing" != "$guest_passed passed, $guest_failed failed" ]; then
  fail "host.guest-verdict" "the guest's closing line '$closing' does not match its $guest_passed PASS and $guest_failed FAIL lines"
elif [ "$qemu_status" != 1 ] && [ "$guest_failed" = 0 ]; then
  fail "host.guest-verdict" "the guest's /init did not report success (QEMU exit $qemu_status): $(head -c 2000 "$qemu_err")"
else
  pass "host.guest-verdict"
fi

# The server ends by itself when QEMU disconnects (--once); bounded all the same.
server_status=
for _ in $(seq 150); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$server_pid" 2>/dev/null; then
  kill -TERM "$server_pid" 2>/dev/null || true
  sleep 5
  kill -KILL "$server_pid" 2>/dev/null || true
fi
wait "$server_pid" 2>/dev/null && server_status=0 || server_status=$?
server_pid=

json_number() { sed -n "s/.*\"$2\":\([0-9-]*\).*/\1/p" <<<"$1" | head -1; }
report=$(grep '"event":"report"' "$server_out" || true)
if [ "$server_status" != 0 ] || [ -z "$report" ]; then
  fail "host.server-report" "the server exited with $server_status and $( [ -z "$report" ] && echo "no report" || echo "a report"): $(tail -c 1000 "$server_err")"
else
  held=$(json_number "$report" mappings_held) refused=$(json_number "$report" refused) stray=$(json_number "$report" stray_replies)
  vectors=$(json_number "$report" vectors_wired) resets=$(json_number "$report" function_resets)
  iommu=$(json_number "$report" device_accesses_refused)
  cycles=$(json_number "$report" power_cycles) bmc_resets=$(json_number "$report" bmc_resets)
  echo "     server: $(json_number "$report" messages) messages, $(json_number "$report" dma_maps) DMA maps, $resets function resets, $refused refused, $iommu device accesses the IOMMU refused; BMC: $(json_number "$report" bmc_requests) requests, $bmc_resets resets, $cycles power cycles the config space followed"
  if [ "${bmc_resets:-0}" = 1 ] && [ "${cycles:-0}" = 1 ]; then
    pass "host.bmc-power-cycle"
  else
    fail "host.bmc-power-cycle" "the BMC saw ${bmc_resets:-no} RESET and the server followed ${cycles:-no} power cycle (want 1 and 1: the guest's vboard.bmc-reset)"
  fi
  if [ "$held" = 0 ] && [ "$vectors" = 0 ] && [ "$refused" = 0 ] && [ "$stray" = 0 ] && [ "${resets:-0}" -gt 0 ]; then
    pass "host.server-report"
  else
    fail "host.server-report" "after the session: $held mappings and $vectors vectors still held, $refused messages refused, $stray stray replies, $resets function resets (want 0, 0, 0, 0, >0); see $server_err and $trace"
  fi
  # What a board's host would log as IOMMU faults: the device touching memory the driver had not mapped (or had
  # unmapped before it quiesced the device).
  if [ "$iommu" = 0 ]; then
    pass "host.no-iommu-faults"
  else
    fail "host.no-iommu-faults" "the model's IOMMU refused $iommu device accesses during the guest run: the driver let the device reach IOVAs it had not mapped"
  fi
fi

# The oracle: what no board can report. Around the stress run (the marks' snapshots), and over the whole session.
snapshots=$(grep '"event":"oracle"' "$server_out" || true)
begin=$(sed -n 1p <<<"$snapshots") end=$(sed -n 2p <<<"$snapshots")
if [ -z "$begin" ] || [ -z "$end" ]; then
  fail "host.oracle.stress" "no oracle snapshots around the stress run (the guest's marks or the server's SIGUSR1 answers are missing)"
else
  stale=$(( $(json_number "$end" stale_accesses) - $(json_number "$begin" stale_accesses) ))
  faults=$(( $(json_number "$end" faults_raised) - $(json_number "$begin" faults_raised) ))
  accesses=$(( $(json_number "$end" data_accesses) - $(json_number "$begin" data_accesses) ))
  lost=$(json_number "$end" lost_faults)
  echo "     host oracle for the guest's stress run: $accesses data accesses, $faults faults raised, $stale stale accesses, $lost lost faults"
  if [ "$stale" = 0 ] && [ "$lost" = 0 ] && [ "$faults" -gt 0 ] && [ "$accesses" -gt 0 ]; then
    pass "host.oracle.stress"
  else
    fail "host.oracle.stress" "$stale stale accesses and $lost lost faults (want 0 and 0), $faults faults raised and $accesses data accesses (want > 0)"
  fi
fi
if [ -n "$report" ]; then
  stale=$(json_number "$report" stale_accesses) lost=$(json_number "$report" lost_faults)
  if [ "$stale" = 0 ] && [ "$lost" = 0 ]; then
    pass "host.oracle.session"
  else
    fail "host.oracle.session" "over the whole guest run: $stale stale accesses, $lost lost faults (want 0 and 0)"
  fi
fi

if [ -s "$jitter" ] && grep -q '"schema":"fpgaaccel-jitter/1"' "$jitter" && grep -q '"pinned"' "$jitter" && grep -q '"ondemand"' "$jitter"; then
  pass "host.jitter-json"
else
  fail "host.jitter-json" "the guest's jitter JSON did not come back whole over the serial console"
fi

# DMA_MAP messages per MiB, from the server's trace of the probe's two ranges.
count_maps() { # count_maps FIRST_IOVA BYTES: DMA_MAP messages whose IOVA lies in the range
  local first=$(( $1 )) end=$(( $1 + $2 )) n=0 iova
  while read -r iova; do
    (( iova >= first && iova < end )) && n=$((n + 1))
  done < <(grep -oE 'DmaMap iova=0x[0-9a-f]+' "$trace" | sed 's/.*=//')
  echo "$n"
}
measure=$(grep -h '^VBOARD-MEASURE ' "$guest_out" | sed 's/^VBOARD-MEASURE //' | tr ' ' '\n')
value() { sed -n "s/^$1=//p" <<<"$measure" | head -1; }
small_iova=$(value probe_small_pages_iova) huge_iova=$(value probe_huge_page_iova)
if [ -n "$small_iova" ] && [ -n "$huge_iova" ] && [ -s "$trace" ]; then
  small=$(count_maps "$small_iova" "$(value probe_small_pages_bytes)") huge=$(count_maps "$huge_iova" "$(value probe_huge_page_bytes)")
  if [ "$small" -gt 0 ] && [ "$huge" -gt 0 ]; then
    pass "host.dma-map-messages"
  else
    fail "host.dma-map-messages" "the server saw $small DMA_MAP messages for the probe's 1 MiB of 4 KiB pages and $huge for its 2 MiB page"
  fi
else
  small='?' huge='?'
  fail "host.dma-map-messages" "the probe's measurements or the server's trace are missing"
fi

jitter_field() { sed -n "s/.*\"$1\":{\"count\":[0-9]*,\"min_ns\":[0-9.]*,\"p50_ns\":\([0-9.]*\),\"p90_ns\":\([0-9.]*\),\"p99_ns\":\([0-9.]*\),\"p999_ns\":\([0-9.]*\).*/p50 \1 ns, p90 \2 ns, p99 \3 ns, p99.9 \4 ns/p" "$jitter" 2>/dev/null | head -1; }
echo "     measured from the guest (TCG, not PCIe timing): register read p50 $(value register_read_us_p50) us (p99 $(value register_read_us_p99) us), posted write $(value posted_write_us_mean) us;" \
  "DMA_MAP messages: $small for 1 MiB in 4 KiB pages, $huge for one 2 MiB page; boot to verdict ${verdict_at:-?} s"
echo "     BMC RESET under the driver: reply $(value bmc_reset_reply_ms) ms, to Lost $(value bmc_reset_to_lost_ms) ms, waiters released $(value bmc_reset_to_released_ms) ms," \
  "to Ready $(value bmc_reset_to_ready_ms) ms (Recover() $(value bmc_recover_call_ms) ms; the BMC keeps the FA-1 off the bus 1000 ms)"
echo "     doorbell to completion (jitter, pinned): $(jitter_field pinned)"
echo "     on-demand (jitter, faulting): $(jitter_field ondemand)"
finish
