#!/usr/bin/env bash
# smoke.sh ISO ELF [bios|uefi]: the non-interactive GDB check. QEMU starts paused with its
# gdbstub; GDB (batch mode, capmon.gdb loaded) puts a hardware breakpoint on kmain_multiboot2,
# continues, and the stop must be at the address `nm` gives for that symbol. Then GDB detaches,
# the kernel must reach its prompt. Prints PASS/FAIL lines and "N passed, N failed"; exit 0
# only if all passed. The GDB and serial output go to build/transcripts/gdb-smoke-FIRMWARE.log.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
iso=${1:?usage: smoke.sh ISO ELF [bios|uefi]}
elf=${2:?usage: smoke.sh ISO ELF [bios|uefi]}
fw=${3:-bios}
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }

mkdir -p build/transcripts
log=build/transcripts/gdb-smoke-$fw.log
serial=$(mktemp /tmp/capmon-gdb-serial.XXXXXX)
vars=$(mktemp /tmp/capmon-gdb-vars.XXXXXX)
qemu=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$qemu" ]; then kill -9 "$qemu" 2>/dev/null; wait "$qemu" 2>/dev/null; fi
    rm -f "$serial" "$vars"
}
trap cleanup EXIT

want=$(nm "$elf" 2>/dev/null | awk '$3 == "kmain_multiboot2" { print $1; exit }')
if [ -z "$want" ]; then fail "nm kmain_multiboot2" "no such symbol in $elf"; finish; fi
want=$((16#$want))

# A free TCP port on loopback for the gdbstub (proofs run in parallel).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fw_args=()
timeout_s=60
if [ "$fw" = uefi ]; then
    code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
    cp "${OVMF_VARS_TEMPLATE:-${code/OVMF_CODE/OVMF_VARS}}" "$vars"
    fw_args=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
             -drive "if=pflash,format=raw,unit=1,file=$vars")
    timeout_s=120
fi
qemu-system-x86_64 -accel tcg -machine q35 -m 256M -smp 1 -no-reboot -display none -monitor none \
    -serial "file:$serial" -S -gdb "tcp:127.0.0.1:$port" "${fw_args[@]}" -cdrom "$iso" \
    </dev/null >>"$log.qemu" 2>&1 &
qemu=$!

# The gdbstub listens a moment after QEMU starts.
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

timeout "$timeout_s" gdb -batch -nx -x scripts/gdb/capmon.gdb \
    -ex "target remote 127.0.0.1:$port" \
    -ex 'delete' -ex 'hbreak *kmain_multiboot2' -ex 'continue' \
    -ex 'info registers rip' -ex 'capmon-bt' -ex 'capmon-regs' -ex 'delete' -ex 'detach' \
    "$elf" </dev/null >"$log" 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
    pass "gdb batch run"
else
    fail "gdb batch run" "exit status $rc (124: timed out after $timeout_s s)"
fi

if grep -q '^Hardware assisted breakpoint 1 at ' "$log" && grep -q '^Breakpoint 1, .*kmain_multiboot2' "$log"; then
    pass "hardware breakpoint on kmain_multiboot2 hit"
else
    fail "hardware breakpoint on kmain_multiboot2 hit" "$(grep -m3 -iE 'error|breakpoint|warning' "$log" | tr '\n' ' ')"
fi
got=$(awk '$1 == "rip" { print $2; exit }' "$log")
if [ -n "$got" ] && [ $((got)) -eq "$want" ]; then
    pass "rip = kmain_multiboot2 = $(printf '0x%x' "$want") (nm)"
else
    fail "rip at the breakpoint" "expected $(printf '0x%x' "$want") (nm), got '${got:-nothing}'"
fi

# Detached, the kernel runs on to its prompt.
for _ in $(seq $((timeout_s * 2))); do
    grep -q 'capmon> ' "$serial" 2>/dev/null && break
    sleep 0.5
done
{ echo "---- serial console ----"; cat "$serial"; } >>"$log"
[ -f "$log.qemu" ] && { echo "---- qemu ----"; cat "$log.qemu"; rm -f "$log.qemu"; } >>"$log"
if grep -q 'capmon> ' "$serial"; then
    pass "after detach the kernel reaches the prompt"
else
    fail "after detach the kernel reaches the prompt" "no 'capmon> ' on the serial console within $timeout_s s"
fi
finish
