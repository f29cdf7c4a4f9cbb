# shellcheck shell=bash
# scripts/bench/store.sh: the body of `make bench-store`, sourced by scripts/bench-store.sh (which
# sets what is measured and the goals).
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs (scripts/bench/linux.sh)
# on the identical QEMU command line, each with a disk of its own made anew each run
# (scripts/bench/ext4.sh: the disks, the ext4, the init).
#   capmon: formats its partition (`$STORE_FORMAT`) before the rounds, then runs
#     `store bench -n N SIZES...`: per size, N puts (one new object each, committed durably: the
#     commit flushes the disk), then N gets (each object read back and its bytes verified).
#   Linux: scripts/bench-store-linux.c does the same with files in the mounted ext4: create,
#     write, fsync the file, fsync the directory, close; then read back and compare (it times
#     the system calls and the comparison, not making each file's bytes).
# The gets read what the round has just written, with caches as they are in both guests
# (Linux's page cache is not dropped): a warm read-back, not a cold one. Each round then removes
# what it made, untimed (capmon unbinds the round's names; the helper deletes its files and
# commits that), so every round starts on a store as empty as the one before.
#
# Each boot runs one warm-up round (discarded), then BENCH_REPEAT rounds, marked
# `BENCH-ROUND warmup|N` in the transcripts; the median run counts. Prints a table: metric,
# capmon, Linux, ratio (capmon ops/s over Linux ops/s), goal, met? A benchmark, not a test: a
# missed goal does not fail; exit status 1 only if something could not be measured.
#
# The caller sets, then calls bench_store_main:
#   BENCH         its name (bench-store): in messages, and the output folder build/$BENCH
#   DEV, PART     the disk and its partition, the same names in both guests (vda, vda1)
#   DEVICE        the QEMU -device option that attaches drive bench-disk
#   MODULES       the Linux modules the disk and ext4 need, in load order (built-in ones skipped)
#   STORE_TYPE    the GPT type GUID of capmon's store partition
#   STORE_FORMAT  the capmon command that formats it
#   MEASURE       an array, one measurement an element: "OP BYTES GOAL LABEL..." (OP put or get;
#                 GOAL: the capmon/Linux ops/s ratio to reach, like 1.0x, or - for none); the
#                 sizes of the rounds' command are the BYTES of MEASURE, in order
# Knobs: BENCH_REPEAT (7), BENCH_OBJECTS (N, 200), and scripts/bench/ext4.sh's (BENCH_DISK_SIZE,
#        BENCH_ACCEL, BENCH_MEM, BENCH_SMP, BENCH_TIMEOUT, BENCH_CMD_TIMEOUT: per round here).
REPEAT=${BENCH_REPEAT:-7}
OBJECTS=${BENCH_OBJECTS:-200}

# shellcheck source=scripts/bench/ext4.sh
. scripts/bench/ext4.sh

# The sizes the rounds' command takes: the BYTES of MEASURE, each once, in order.
sizes() {
    local m bytes out=()
    for m in "${MEASURE[@]}"; do
        read -r _ bytes _ <<<"$m"
        [[ " ${out[*]} " == *" $bytes "* ]] || out+=("$bytes")
    done
    echo "${out[*]}"
}

# The Linux init's measurement: every round, in the mounted ext4.
linux_measure() {
    cat <<EOF
    for r in warmup \$(seq $REPEAT); do
        echo "BENCH-ROUND \$r"
        bench-store-linux -n $OBJECTS $(sizes) || echo "BENCH-ERROR bench-store-linux round \$r"
    done
EOF
}

# stats LOG M: "median-ops/s its-mean-us best-ops/s runs" of M's result lines outside the warm-up.
stats() {
    local op bytes
    read -r op bytes _ <<<"$2"
    after_warmup "$1" \
        | sed -n "s/.*store bench $op $bytes: [0-9]* ops in [0-9]* ms: \([0-9.]*\) ops\/s, mean \([0-9.]*\) us.*/\1 \2/p" \
        | median_best
}

# row M: one table entry; clears `status` if M was not measured in both guests.
row() {
    local goal label
    read -r _ _ goal label <<<"$1"
    compare_row "$label" "$goal" ops/s 15 "mean op time of the median run" \
        "$(stats "$OUT/capmon.log" "$1")" "$(stats "$OUT/linux.log" "$1")" || status=1
}

bench_store_main() {
    local r m
    check_tools
    VMLINUZ=$(fetch_linux)
    build_initramfs "$VMLINUZ" scripts/bench-store-linux.c
    say "making $CAPMON_DISK and $LINUX_DISK ($DISK_SIZE each, GPT, one partition)"
    make_disks
    say "QEMU: $(qemu_common DISK) (DISK: $CAPMON_DISK for capmon, $LINUX_DISK for Linux)"
    say "each round: store bench -n $OBJECTS $(sizes)"

    # ---- capmon ----
    # The store is formatted once per boot, before the warm-up round.
    local cmds=("$STORE_FORMAT")
    for r in warmup $(seq "$REPEAT"); do
        cmds+=("echo BENCH-ROUND $r" "store bench -n $OBJECTS $(sizes)")
    done
    say "capmon: booting $ISO (format $PART, a warm-up and $REPEAT rounds)"
    run_capmon "$OUT/capmon.log" "${cmds[@]}"
    check_capmon "$OUT/capmon.log" store

    # ---- Linux ----
    # Its init runs every round itself: the bound is the boot's plus one per round.
    say "linux: booting ${VMLINUZ##*/} with the busybox initramfs"
    run_linux "$OUT/linux.log" $((TIMEOUT + (REPEAT + 1) * CMD_TIMEOUT))

    # ---- Results ----
    # The machine is shared and TCG is sensitive to host load, which only ever slows a run down;
    # the median is what is judged, the best run is shown beside it.
    status=0
    printf '\n%-24s %15s %15s %7s %5s %s\n' metric capmon Linux ratio goal met?
    for m in "${MEASURE[@]}"; do
        row "$m"
    done
    echo "put: one new object made durable per op; capmon: a store commit, which flushes the disk;"
    echo "     Linux: create, write, fsync the file, fsync the directory, close, on ext4"
    echo "     $(linux_mount_note "$OUT/linux.log")"
    echo "get: the round's objects read back and verified right after their puts, caches warm in"
    echo "     both guests (Linux's page cache is not dropped): a warm read-back, not a cold read"
    echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
    echo "capmon: $ISO; Linux: ${VMLINUZ##*/}; transcripts: $OUT/capmon.log $OUT/linux.log"
    return $status
}
