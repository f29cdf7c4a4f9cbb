#!/usr/bin/env bash
# scripts/bench-fs.sh (make bench-fs): capmon's file system (the Directory and File capabilities
# of its store) against ext4 in a Linux guest, on the same QEMU.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs on the identical QEMU
# command line with one virtio-blk scratch disk (cache=none) each, made anew before every boot
# (scripts/bench/ext4.sh: the disks, the ext4, the init). capmon formats its partition and runs
# `fs bench -n N -m MIB` (cmds/src/fs.rs); Linux runs scripts/bench-fs-linux.c, which does the
# same with system calls and prints the same lines, once with its fsyncs and once without:
#   create+4K+sync  N times: a new file, 4 KiB written, made durable (capmon: a sync; Linux:
#                   fsync of the file and of its directory)
#   write 1M+sync   MIB writes of 1 MiB into a new file, then one sync / fsync (MB/s)
#   read 1M         that file read back in 1 MiB reads, each checked (MB/s)
#   open+read 4K    every small file opened, read whole and checked
#   rename+1 sync   every small file renamed, then one sync / fsync of the directory
# The reads follow the writes with caches as they are in both guests: a warm read-back.
# The comparison that is judged is against Linux with fsync (the same durability); Linux
# without fsync is shown below each row, for what ext4 does when nobody asks for durability.
#
# Runs are interleaved by boot: capmon, Linux, capmon, Linux, ... (BENCH_BOOTS pairs), so a
# slow spell of the host falls on both; each boot runs one warm-up round (discarded) and
# BENCH_REPEAT rounds, marked `BENCH-ROUND warmup|N`; the median of all the measured rounds
# counts, the best is shown beside it. Then one more boot of each makes LONG (10 000) creates in
# one directory, and the rate of the last tenth is reported against the first tenth's ("without
# slowing down": the goal is a last/first ratio of at least 0.90, which leaves room for noise).
# Goal on every row: at least 1.0x Linux with fsync. A benchmark, not a test: a missed goal does
# not fail; exit status 1 only if something could not be measured.
#
# Knobs: BENCH_BOOTS (3), BENCH_REPEAT (rounds a boot, 3), BENCH_FILES (N, 1000), BENCH_MIB (64),
#        BENCH_LONG (10000), and scripts/bench/ext4.sh's (BENCH_DISK_SIZE, here 512M;
#        BENCH_ACCEL, BENCH_MEM, BENCH_SMP, BENCH_TIMEOUT, BENCH_CMD_TIMEOUT: per round).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=bench-fs
DEV=vda
PART=vda1
DEVICE="-device virtio-blk-pci,drive=bench-disk"
# In load order, the built-in ones skipped (as scripts/bench-store.sh).
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk
         crc16 crc32c_generic mbcache jbd2 ext4"
# drivers/block/src/gpt.rs CAPMON_DATA.
STORE_TYPE=c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e
STORE_FORMAT="store format $PART -f"
BOOTS=${BENCH_BOOTS:-3}
REPEAT=${BENCH_REPEAT:-3}
FILES=${BENCH_FILES:-1000}
MIB=${BENCH_MIB:-64}
LONG=${BENCH_LONG:-10000}
: "${BENCH_DISK_SIZE:=512M}"
# One row an element: "ROW|ROW WITHOUT FSYNC|UNIT|GOAL|LABEL", ROW as both benches print it.
MEASURE=(
    "create+write 4K+sync|nofsync create+write 4K|ops/s|1.0x|create+4K+sync"
    "write 1M+sync|nofsync write 1M|MB/s|1.0x|write 1M+sync"
    "read 1M|nofsync read 1M|MB/s|1.0x|read 1M"
    "open+read 4K|nofsync open+read 4K|ops/s|1.0x|open+read 4K"
    "rename+1 sync|nofsync rename|ops/s|1.0x|rename+1 sync"
)
FS_BENCH="fs bench -n $FILES -m $MIB"

# shellcheck source=scripts/bench/ext4.sh
. scripts/bench/ext4.sh

# The Linux init's measurement: a long boot (bench.long on the kernel command line) makes the
# LONG creates; any other runs the rounds, each with fsync and then without.
linux_measure() {
    cat <<EOF
    case "\$cmdline" in
    *bench.long*)
        echo "BENCH-ROUND long"
        bench-fs-linux -n $LONG -m 1 || echo "BENCH-ERROR bench-fs-linux long"
        ;;
    *)
        for r in warmup \$(seq $REPEAT); do
            echo "BENCH-ROUND \$r"
            bench-fs-linux -n $FILES -m $MIB || echo "BENCH-ERROR bench-fs-linux round \$r"
            bench-fs-linux -n $FILES -m $MIB --no-fsync \
                || echo "BENCH-ERROR bench-fs-linux --no-fsync round \$r"
        done
        ;;
    esac
EOF
}

# stats LOG ROW UNIT: "median its-mean-us best runs" of ROW's result lines outside the warm-ups,
# the value in UNIT (ops/s or MB/s).
stats() {
    after_warmup "$1" | grep -F "fs bench $2: " \
        | sed -n 's/.*: \([0-9]*\) ops in \([0-9]*\) us: \([0-9.]*\) ops\/s\(, \([0-9.]*\) MB\/s\)\{0,1\}$/\1 \2 \3 \5/p' \
        | awk -v unit="$3" '{ printf "%s %d\n", (unit == "MB/s") ? $4 : $3, $2 / $1 }' \
        | median_best
}

# row M: the row against Linux with fsync (judged), then against Linux without (shown).
row() {
    local key nokey unit goal label c
    IFS='|' read -r key nokey unit goal label <<<"$1"
    c=$(stats "$OUT/capmon.log" "$key" "$unit")
    compare_row "$label" "$goal" "$unit" 15 "mean op time of the median run" \
        "$c" "$(stats "$OUT/linux.log" "$key" "$unit")" || status=1
    compare_row "  vs Linux, no fsync" - "$unit" 15 "the same, Linux without fsync" \
        "$c" "$(stats "$OUT/linux.log" "$nokey" "$unit")" || status=1
}

# long_line LOG: "RATE FIRST LAST RATIO" of the long run in LOG, or nothing.
long_line() {
    local all creates
    all=$(sed -n 's/^fs bench create+write 4K+sync: .* us: \([0-9.]*\) ops\/s.*/\1/p' "$1" | head -n1)
    creates=$(sed -n 's/^fs bench creates: first [0-9]* at \([0-9.]*\) ops\/s, last [0-9]* at \([0-9.]*\) ops\/s: last\/first \([0-9.]*\)x$/\1 \2 \3/p' "$1" | head -n1)
    [ -n "$all" ] && [ -n "$creates" ] && echo "$all $creates"
}

long_report() {
    local who log l all first last ratio tenth=$((LONG / 10))
    echo
    echo "$LONG creates of a 4 KiB file, each synced, in one directory (one boot each):"
    for who in capmon Linux; do
        log=$OUT/${who,,}-long.log
        if ! l=$(long_line "$log"); then
            printf '  %-7s NOT MEASURED (see %s)\n' "$who" "$log"
            status=1
            continue
        fi
        read -r all first last ratio <<<"$l"
        printf '  %-7s %8s ops/s overall; first %s at %s ops/s, last %s at %s ops/s: last/first %sx' \
            "$who" "$all" "$tenth" "$first" "$tenth" "$last" "$ratio"
        if [ "$who" = capmon ]; then
            awk -v r="$ratio" 'BEGIN { print (r >= 0.90) ? "  (goal 0.90x: yes)" : "  (goal 0.90x: no)" }'
        else
            echo
        fi
    done
}

main() {
    local b r m cmds
    check_tools
    VMLINUZ=$(fetch_linux)
    build_initramfs "$VMLINUZ" scripts/bench-fs-linux.c
    say "QEMU: $(qemu_common DISK) (DISK: $CAPMON_DISK for capmon, $LINUX_DISK for Linux, $DISK_SIZE each, made anew for every boot)"
    say "each round: $FS_BENCH; Linux: bench-fs-linux -n $FILES -m $MIB, then the same --no-fsync"
    rm -f "$OUT"/capmon-*.log "$OUT"/linux-*.log
    for b in $(seq "$BOOTS"); do
        make_disks
        cmds=("$STORE_FORMAT")
        for r in warmup $(seq "$REPEAT"); do
            cmds+=("echo BENCH-ROUND $r" "$FS_BENCH")
        done
        say "boot pair $b of $BOOTS: capmon (format $PART, a warm-up and $REPEAT rounds)"
        run_capmon "$OUT/capmon-$b.log" "${cmds[@]}"
        check_capmon "$OUT/capmon-$b.log" fs
        say "boot pair $b of $BOOTS: linux ${VMLINUZ##*/}"
        run_linux "$OUT/linux-$b.log" $((TIMEOUT + (REPEAT + 1) * CMD_TIMEOUT))
    done
    cat "$OUT"/capmon-[0-9]*.log >"$OUT/capmon.log"
    cat "$OUT"/linux-[0-9]*.log >"$OUT/linux.log"
    make_disks
    say "the long run: capmon, fs bench -n $LONG -m 1"
    run_capmon "$OUT/capmon-long.log" "$STORE_FORMAT" "echo BENCH-ROUND long" "fs bench -n $LONG -m 1"
    check_capmon "$OUT/capmon-long.log" fs
    say "the long run: linux, bench-fs-linux -n $LONG -m 1"
    run_linux "$OUT/linux-long.log" $((TIMEOUT + CMD_TIMEOUT)) bench.long

    # ---- Results ----
    status=0
    printf '\n%-24s %15s %15s %7s %5s %s\n' metric capmon Linux ratio goal met?
    for m in "${MEASURE[@]}"; do
        row "$m"
    done
    long_report
    echo
    echo "N = $FILES small files, MIB = $MIB; medians of $((BOOTS * REPEAT)) rounds in $BOOTS interleaved boot pairs"
    echo "durable: capmon's sync commits the store and flushes the disk; Linux's fsync of the file"
    echo "     and of its directory, on ext4 $(linux_mount_note "$OUT/linux.log")"
    echo "reads: right after the writes, caches warm in both guests (a warm read-back)"
    echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
    echo "capmon: $ISO; Linux: ${VMLINUZ##*/}; transcripts: $OUT/capmon-*.log $OUT/linux-*.log"
    return $status
}

main
