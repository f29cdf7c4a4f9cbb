#!/usr/bin/env bash
# run-gdb.sh ISO ELF [EXTRA_QEMU_ARGS]: boots ISO under QEMU paused (-s -S: gdbstub on
# localhost:1234, CPU stopped), attaches GDB with ELF's symbols and scripts/gdb/capmon.gdb,
# sets hardware breakpoints on the kernel entry points. The serial console goes to
# build/gdb-serial.log (`tail -f` it in another terminal). Quitting GDB stops QEMU.
# FIRMWARE=uefi boots under OVMF; GDB_PORT changes the port.
set -euo pipefail
cd "$(dirname "$0")/../.."
iso=${1:?usage: run-gdb.sh ISO ELF [EXTRA_QEMU_ARGS]}
elf=${2:?usage: run-gdb.sh ISO ELF [EXTRA_QEMU_ARGS]}
extra=${3:-}
port=${GDB_PORT:-1234}
mkdir -p build
serial=build/gdb-serial.log

fw_args=()
if [ "${FIRMWARE:-bios}" = uefi ]; then
    code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
    vars_tmpl=${OVMF_VARS_TEMPLATE:-${code/OVMF_CODE/OVMF_VARS}}
    cp "$vars_tmpl" build/OVMF_VARS-gdb.fd
    fw_args=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
             -drive "if=pflash,format=raw,unit=1,file=build/OVMF_VARS-gdb.fd")
fi

# shellcheck disable=SC2086 # EXTRA is a list of QEMU arguments
qemu-system-x86_64 -machine q35 -m "${MEM:-256M}" -smp "${SMP:-1}" -no-reboot -display none \
    -monitor none -serial "file:$serial" -S -gdb "tcp:127.0.0.1:$port" "${fw_args[@]}" \
    -cdrom "$iso" $extra &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true; wait "$qemu" 2>/dev/null || true' EXIT
echo "QEMU (pid $qemu) paused, gdbstub on 127.0.0.1:$port; serial console in $serial"
sleep 0.5
gdb -q -x scripts/gdb/capmon.gdb -ex "target remote 127.0.0.1:$port" -ex capmon-break-kmain \
    -ex 'echo \n"continue" runs to kmain; capmon-bt, capmon-regs, capmon-sym ADDR help there.\n' \
    "$elf"
