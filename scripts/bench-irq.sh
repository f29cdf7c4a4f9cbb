#!/usr/bin/env bash
# scripts/bench-irq.sh (make bench-irq): virtio-blk 4 KiB QD1 random reads completed by MSI-X,
# by INTx and by polling, on one kernel and one QEMU command line (q35, cache=none scratch
# disk); only the kernel command line differs (virtio_irq=auto|intx|poll, in variant ISOs made
# from build/iso). Runs are interleaved round by round (MSI-X, INTx, polling, MSI-X, ...), each
# boot warms up with one untimed run, and the median over all timed runs is compared: the goal
# is MSI-X within 10% of polling (and the host CPU free while idle, which expect/irq.exp
# measures). A benchmark, not a test: a missed goal does not fail; exit 1 only if something
# could not be measured.
# Knobs: BENCH_ROUNDS (3), BENCH_RUNS (3 timed runs per boot), BENCH_DISK_SIZE (64M), QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
OUT=$BUILD/bench-irq
QEMU=${QEMU:-qemu-system-x86_64}
ROUNDS=${BENCH_ROUNDS:-3}
RUNS=${BENCH_RUNS:-3}
DISK_SIZE=${BENCH_DISK_SIZE:-64M}
DISK=$OUT/disk.img
say() { echo "bench-irq: $*" >&2; }
die() { say "$*"; exit 1; }

[ -d "$BUILD/iso/boot/grub" ] || die "$BUILD/iso missing: run 'make iso' first"
mkdir -p "$OUT"
for mode in auto intx poll; do
    iso=$OUT/capmon-$mode.iso
    if [ ! -f "$iso" ] || [ "$iso" -ot "$BUILD/capmon.iso" ]; then
        rm -rf "$OUT/iso-$mode" && cp -r "$BUILD/iso" "$OUT/iso-$mode"
        sed -i "s|multiboot2 /boot/capmon.elf.*|multiboot2 /boot/capmon.elf virtio_irq=$mode|" \
            "$OUT/iso-$mode/boot/grub/grub.cfg"
        grub-mkrescue -o "$iso" "$OUT/iso-$mode" >"$OUT/grub-$mode.log" 2>&1 ||
            die "grub-mkrescue for $mode failed (see $OUT/grub-$mode.log)"
    fi
done
want=$(numfmt --from=iec "$DISK_SIZE")
if [ ! -f "$DISK" ] || [ "$(stat -c %s "$DISK")" != "$want" ]; then
    head -c "$want" /dev/urandom >"$DISK"
fi

# cache=none needs O_DIRECT on the host file system; fall back (and say so) where it is refused.
cache=none
if ! $QEMU -accel tcg -machine q35 -display none -S -no-reboot -monitor none -serial none \
        -drive if=none,id=t,format=raw,file="$DISK",cache=none -device virtio-blk-pci,drive=t \
        -daemonize -pidfile "$OUT/probe.pid" >/dev/null 2>&1; then
    cache=writeback
    say "cache=none refused on this file system; using cache=writeback"
else
    kill "$(cat "$OUT/probe.pid")" 2>/dev/null || true
fi
common="-accel tcg -machine q35 -m 256M -smp 1 -display none -serial stdio -monitor none -no-reboot"
common="$common -drive if=none,id=d0,format=raw,file=$DISK,cache=$cache -device virtio-blk-pci,drive=d0"

cmds=(--cmd "blk bench vda rand read 4K")   # warm-up
for _ in $(seq "$RUNS"); do cmds+=(--cmd "blk bench vda rand read 4K"); done
cmds+=(--cmd "virtio")
: >"$OUT/results.txt"
for r in $(seq "$ROUNDS"); do
    for mode in auto intx poll; do
        log=$OUT/$mode-$r.log
        # shellcheck disable=SC2086
        python3 scripts/bench-blk-guest.py --log "$log" --timeout 120 "${cmds[@]}" \
            -- $QEMU $common -boot d -cdrom "$OUT/capmon-$mode.iso" >/dev/null 2>&1 ||
            say "$mode round $r did not end cleanly (see $log)"
        mech=$(tr -d '\r' <"$log" | sed -n 's/^   irq *\([^:]*\).*/\1/p' | head -n1)
        # Skip the warm-up (the first bench line of the boot).
        tr '\r' '\n' <"$log" | sed -n 's/.*bench vda rand read 4096: .* \([0-9.]*\) MB\/s, \([0-9]*\) IOPS, mean \([0-9]*\) us.*/\1 \2 \3/p' \
            | tail -n +2 | while read -r mbs iops us; do echo "$mode ${mech:-?} $mbs $iops $us"; done \
            >>"$OUT/results.txt"
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "" }'; }
printf '%-8s %-22s %10s %10s %8s %s\n' mode completion "MB/s" "mean us" runs "ratio to polling"
poll=$(awk '$1 == "poll" { print $3 }' "$OUT/results.txt" | median)
status=0
for mode in auto intx poll; do
    mbs=$(awk -v m=$mode '$1 == m { print $3 }' "$OUT/results.txt" | median)
    us=$(awk -v m=$mode '$1 == m { print $5 }' "$OUT/results.txt" | median)
    n=$(awk -v m=$mode '$1 == m' "$OUT/results.txt" | wc -l)
    mech=$(awk -v m=$mode '$1 == m { print $2; exit }' "$OUT/results.txt")
    if [ -z "$mbs" ] || [ -z "$poll" ]; then
        printf '%-8s %-22s %10s\n' "$mode" "${mech:-?}" "NOT MEASURED"; status=1; continue
    fi
    awk -v m="$mode" -v c="${mech:-?}" -v v="$mbs" -v u="$us" -v n="$n" -v p="$poll" 'BEGIN {
        printf "%-8s %-22s %10.1f %10d %8d %.2fx\n", m, c, v, u, n, v / p }'
done
if [ -n "$poll" ]; then
    auto=$(awk '$1 == "auto" { print $3 }' "$OUT/results.txt" | median)
    awk -v a="$auto" -v p="$poll" 'BEGIN { r = a / p; printf "goal: MSI-X >= 0.90x polling: %.2fx, %s\n", r, (r >= 0.9) ? "met" : "NOT met" }'
fi
echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg); cache=$cache; logs in $OUT/"
exit $status
