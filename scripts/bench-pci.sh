#!/usr/bin/env bash
# scripts/bench-pci.sh (make bench-pci): time per full PCI enumeration through ECAM (the MCFG
# window, one MMIO access per register read) and through the legacy ports (0xcf8 address
# write + 0xcfc data access), on -M q35 with a few devices: a virtio-blk, an NVMe controller,
# an e1000, and a PCIe root port with an e1000e behind it.
#
# Boots build/capmon.iso BENCH_RUNS times; each boot runs `pci bench 20` (warm-up), then
# `pci bench BENCH_N`: the command times N enumerations per mechanism with the TSC and prints
# ns/enumeration; this script parses those lines and prints each run and the medians. Under
# TCG on a shared machine single runs scatter (factor 2 and more): read the median.
# A benchmark, not a test: exit status 1 only if something could not be measured.
# Knobs: BENCH_N (enumerations per mechanism, 1000), BENCH_RUNS (5), BENCH_ACCEL (tcg; kvm
#        needs /dev/kvm), CAPMON_FIRMWARE (bios|uefi, bios), CAPMON_ISO, QEMU, OVMF_CODE,
#        OVMF_VARS_TEMPLATE. Results also go to build/bench-pci.txt, each boot's serial
#        output to build/bench-pci/run-N.log.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-1000}
RUNS=${BENCH_RUNS:-5}
ACCEL=${BENCH_ACCEL:-tcg}
FW=${CAPMON_FIRMWARE:-bios}
ISO=${CAPMON_ISO:-build/capmon.iso}
QEMU=${QEMU:-qemu-system-x86_64}
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS_TEMPLATE=${OVMF_VARS_TEMPLATE:-/usr/share/OVMF/OVMF_VARS_4M.fd}
WORK=build/bench-pci
OUT=build/bench-pci.txt

die() { echo "bench-pci: $*" >&2; exit 1; }
[ -f "$ISO" ] || die "no $ISO (run 'make iso')"
command -v expect >/dev/null || die "expect not found (scripts/setup.sh installs it)"
case "$FW" in bios | uefi) ;; *) die "CAPMON_FIRMWARE must be bios or uefi" ;; esac
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -lt 1 ] || [ "$N" -gt 10000 ]; then
    die "BENCH_N must be 1..10000"
fi
if ! [[ "$RUNS" =~ ^[0-9]+$ ]] || [ "$RUNS" -lt 1 ]; then die "BENCH_RUNS must be 1 or more"; fi
rm -rf "$WORK" && mkdir -p "$WORK"
truncate -s 1M "$WORK/vblk.img" "$WORK/nvme.img"

# shellcheck disable=SC2054 # the commas are inside -device arguments
qemu_cmd=("$QEMU" -accel "$ACCEL" -machine q35 -m 256M -smp 1 -no-reboot -display none
    -monitor none -serial stdio -nic none -boot d -cdrom "$ISO"
    -drive "if=none,id=d0,format=raw,file=$WORK/vblk.img" -device virtio-blk-pci,drive=d0
    -drive "if=none,id=d1,format=raw,file=$WORK/nvme.img" -device nvme,drive=d1,serial=bench
    -device e1000 -device pcie-root-port,id=rp1,chassis=1,slot=1 -device e1000e,bus=rp1)
boot_timeout=60
if [ "$FW" = uefi ]; then
    cp "$OVMF_VARS_TEMPLATE" "$WORK/VARS.fd"
    qemu_cmd+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
        -drive "if=pflash,format=raw,unit=1,file=$WORK/VARS.fd")
    boot_timeout=120
fi
# The benchmark itself is bounded: 2 x N enumerations of 10 functions, at worst a few ms each
# under TCG.
bench_timeout=$((60 + N / 2))

# One boot: wait for the prompt, `pci bench N`, `poweroff`; every wait bounded, QEMU killed
# whatever happens. Prints everything QEMU's serial port said (the run's log).
run_once() {
    expect -f - "$boot_timeout" "$bench_timeout" "$N" "${qemu_cmd[@]}" <<'EOF'
set boot_tmo [lindex $argv 0]
set bench_tmo [lindex $argv 1]
set n [lindex $argv 2]
set stty_init -onlcr
log_user 1
spawn -noecho {*}[lrange $argv 3 end]
set qemu [exp_pid]
exit -onexit { catch {exec kill -9 $qemu} }
expect -timeout $boot_tmo -re {\ncapmon> } {} timeout { puts "ERROR no prompt"; exit 1 } eof { puts "ERROR QEMU exited"; exit 1 }
# A short first round warms up both code paths (TCG translates code on first use, which
# would be charged to whichever mechanism the command times first).
send "pci bench 20\r"
expect -timeout $bench_tmo -re {pci bench:.*\ncapmon> } {} \
    timeout { puts "ERROR pci bench did not finish"; exit 1 } eof { puts "ERROR QEMU exited"; exit 1 }
send "pci bench $n\r"
expect -timeout $bench_tmo -re {pci bench:.*\ncapmon> } {} \
    timeout { puts "ERROR pci bench did not finish"; exit 1 } eof { puts "ERROR QEMU exited"; exit 1 }
send "poweroff\r"
expect -timeout 30 eof {} timeout {}
EOF
}

echo "pci bench: q35, $FW, -accel $ACCEL, $RUNS boots x $N enumerations per mechanism" | tee "$OUT"
printf '%-6s %10s %16s %16s %12s\n' run functions "ecam ns/enum" "legacy ns/enum" legacy/ecam | tee -a "$OUT"
: >"$WORK/results"
for i in $(seq 1 "$RUNS"); do
    run_once >"$WORK/run-$i.log" 2>&1 || die "run $i: $(tail -n 1 "$WORK/run-$i.log")"
    # `ecam:   25124 ns/enumeration (11 functions)` and the same for legacy; the last ones
    # (the warm-up round printed them first).
    awk -v run="$i" '
        /^ecam: /   { e = $2; fe = substr($4, 2) }
        /^legacy: / { l = $2; fl = substr($4, 2) }
        END {
            if (e <= 0 || l <= 0) exit 1
            if (fe != fl) printf "warning: ecam found %d functions, legacy %d\n", fe, fl > "/dev/stderr"
            printf "%-6s %10d %16d %16d %11.2fx\n", run, fe, e, l, l / e
        }' "$WORK/run-$i.log" >>"$WORK/results" ||
        die "run $i: no ecam/legacy lines in $WORK/run-$i.log"
    tail -n 1 "$WORK/results" | tee -a "$OUT"
done
# The median of each column (RUNS odd: the middle value; even: the lower middle one); the
# ratio is the median of the runs' ratios.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
e=$(awk '{ print $3 }' "$WORK/results" | median)
l=$(awk '{ print $4 }' "$WORK/results" | median)
f=$(awk '{ print $2 }' "$WORK/results" | median)
r=$(awk '{ print $5 + 0 }' "$WORK/results" | median)
awk -v f="$f" -v e="$e" -v l="$l" -v r="$r" 'BEGIN {
    printf "%-6s %10d %16d %16d %11.2fx\n", "median", f, e, l, r
    printf "one enumeration of %d functions: ECAM %.1f us, legacy %.1f us\n", f, e / 1000, l / 1000
}' | tee -a "$OUT"
