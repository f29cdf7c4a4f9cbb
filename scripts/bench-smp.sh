#!/usr/bin/env bash
# scripts/bench-smp.sh (make bench-smp): AP bring-up time, from the first start-up IPI to the
# last CPU online as the kernel logs it ("SMP: N of N CPUs online (...: first start-up to last
# online X ms)"), for -smp 4, 64 and 288 on q35 with -cpu max (x2APIC), SeaBIOS, TCG. Each
# size is booted BENCH_ROUNDS times; min, median and max are printed, with the time to the
# prompt and QEMU's host CPU use while the guest idles at the prompt (every CPU ticks at
# 100 Hz). Beside it, a Linux guest (Debian's cloud kernel, scripts/bench/linux.sh) on the same
# QEMU command line: its own bring-up time from the printk timestamps of "smp: Bringing up
# secondary CPUs" to "smp: Brought up"; it boots with no root file system and panics right
# after (panic=-1 and -no-reboot end QEMU). Runs interleave capmon and Linux; medians compare;
# the goal is capmon faster than Linux at every size.
# A benchmark, not a test: exit 1 only if something could not be measured.
# Last, IPI round-trip latency on -smp 4 (`ipi CPU 1000` to each CPU).
# Knobs: BENCH_ROUNDS (3), BENCH_SIZES ("4 64 288"), BENCH_LINUX (1; 0 skips Linux), QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
OUT=$BUILD/bench-smp
QEMU=${QEMU:-qemu-system-x86_64}
ROUNDS=${BENCH_ROUNDS:-3}
SIZES=${BENCH_SIZES:-4 64 288}
ISO=$BUILD/capmon.iso
say() { echo "bench-smp: $*" >&2; }
die() { say "$*"; exit 1; }
[ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
mkdir -p "$OUT"

# One boot: prints "BRINGUP_MS PROMPT_S IDLE_PCT".
boot_once() {
    local n=$1 log=$OUT/serial-$1.log qemu_pid t0 t1 ms idle
    rm -f "$log"
    t0=$(date +%s%N)
    timeout 600 "$QEMU" -accel tcg -machine q35 -cpu max -m 512M -smp "$n" -no-reboot \
        -display none -monitor none -serial "file:$log" -cdrom "$ISO" 2>"$OUT/qemu-$n.log" &
    qemu_pid=$!
    for _ in $(seq 1 3000); do
        grep -q "capmon> " "$log" 2>/dev/null && break
        kill -0 "$qemu_pid" 2>/dev/null || break
        sleep 0.1
    done
    t1=$(date +%s%N)
    ms=$(sed -n 's/.*SMP: .* CPUs online (.*: first start-up to last online \([0-9.]*\) ms).*/\1/p' "$log")
    idle=""
    if [ -n "$ms" ]; then
        # timeout's child is QEMU.
        local pid
        pid=$(pgrep -P "$qemu_pid" -x qemu-system-x86 2>/dev/null || pgrep -P "$qemu_pid" | head -1)
        idle=$(python3 expect/idlecost.py "${pid:-$qemu_pid}" 5 2>/dev/null |
            sed -n 's/^idle cost: \([0-9.]*\)%.*/\1/p')
    fi
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    [ -n "$ms" ] || { grep -m3 "SMP" "$log" >&2 || true; return 1; }
    echo "$ms $(( (t1 - t0) / 1000000 )) ${idle:-?}"
}

LINUX=${BENCH_LINUX:-1}
if [ "$LINUX" = 1 ]; then
    # shellcheck source=scripts/bench/linux.sh
    . scripts/bench/linux.sh
    VMLINUZ=$(fetch_linux)
fi

# One Linux boot: prints "BRINGUP_MS".
linux_once() {
    local n=$1 log=$OUT/linux-$1.log
    rm -f "$log"
    timeout 900 "$QEMU" -accel tcg -machine q35 -cpu max -m 512M -smp "$n" -no-reboot \
        -display none -monitor none -serial "file:$log" -kernel "$VMLINUZ" \
        -append "console=ttyS0 loglevel=7 printk.time=1 panic=-1" 2>"$OUT/qemu-linux-$n.log" || true
    local t0 t1
    t0=$(tr -d '\r' <"$log" | sed -n 's/^\[ *\([0-9.]*\)\] smp: Bringing up secondary CPUs.*/\1/p' | head -n1)
    t1=$(tr -d '\r' <"$log" | sed -n 's/^\[ *\([0-9.]*\)\] smp: Brought up .*/\1/p' | head -n1)
    [ -n "$t0" ] && [ -n "$t1" ] && awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }' ||
        { grep -m3 "smp:" "$log" >&2 || true; return 1; }
}

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "min %s median %s max %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }

med() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

status=0
for n in $SIZES; do
    : >"$OUT/runs-$n"
    : >"$OUT/linux-runs-$n"
    for r in $(seq 1 "$ROUNDS"); do
        line=$(boot_once "$n") || die "-smp $n round $r: no SMP line (see $OUT/serial-$n.log)"
        echo "$line" >>"$OUT/runs-$n"
        say "-smp $n round $r: capmon $line"
        if [ "$LINUX" = 1 ]; then
            if l=$(linux_once "$n"); then
                echo "$l" >>"$OUT/linux-runs-$n"
                say "-smp $n round $r: Linux $l ms"
            else
                say "-smp $n round $r: Linux printed no smp: lines (see $OUT/linux-$n.log)"
                status=1
            fi
        fi
    done
done
printf "%-6s %-40s %-10s %-8s %-8s %-10s %s\n" "-smp" "capmon bring-up ms (first SIPI -> all)" \
    "Linux ms" "ratio" "goal" "prompt ms" "idle cost (% of a core)"
for n in $SIZES; do
    c=$(cut -d' ' -f1 "$OUT/runs-$n" | med)
    l=$(med <"$OUT/linux-runs-$n")
    ratio=-; met=-
    if [ -n "$l" ]; then
        ratio=$(awk -v c="$c" -v l="$l" 'BEGIN { printf "%.2fx", l / c }')
        met=$(awk -v c="$c" -v l="$l" 'BEGIN { print (c < l) ? "met" : "NOT-met" }')
    fi
    printf "%-6s %-40s %-10s %-8s %-8s %-10s %s\n" "$n" "$(cut -d' ' -f1 "$OUT/runs-$n" | stats)" \
        "${l:--}" "$ratio" "$met" \
        "$(cut -d' ' -f2 "$OUT/runs-$n" | med)" "$(cut -d' ' -f3 "$OUT/runs-$n" | med)"
done
echo "ratio = Linux / capmon (above 1: capmon faster); medians of $ROUNDS interleaved rounds;" \
     "host load average $(cut -d' ' -f1-3 /proc/loadavg)"

# IPI round trips on -smp 4: 1000 fixed IPIs to each other CPU and a self-IPI, answered by an
# IPI back (`ipi CPU 1000` reports min/median/max); one untimed run first warms the path.
say "ipi: -smp 4, 1000 round trips to each CPU"
ipi_cmds=(--cmd "ipi 1 100")
for c in 0 1 2 3; do ipi_cmds+=(--cmd "ipi $c 1000"); done
# shellcheck disable=SC2086
python3 scripts/bench-blk-guest.py --log "$OUT/ipi.log" --timeout 120 "${ipi_cmds[@]}" \
    -- $QEMU -accel tcg -machine q35 -cpu max -m 256M -smp 4 -display none -serial stdio \
    -monitor none -no-reboot -cdrom "$ISO" >/dev/null 2>&1 || say "ipi run did not end cleanly"
tr -d '\r' <"$OUT/ipi.log" | grep "1000 round trips" || { say "no ipi results (see $OUT/ipi.log)"; status=1; }
exit $status
