# shellcheck shell=bash
# scripts/bench/blk.sh: the body of the block-device benchmarks, sourced by scripts/bench-blk.sh
# (virtio-blk) and scripts/bench-nvme.sh (NVMe), which differ only in the disk's QEMU device, its
# name, the Linux modules it needs and the measurements with their goals.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs (scripts/bench/linux.sh)
# on the identical QEMU command line: machine, memory, CPUs, accelerator, and one raw scratch disk
# of random bytes (so no GPT) with cache=none, so neither guest is served from the host's page
# cache. capmon runs `blk bench DEV ...`; Linux runs scripts/bench-blk-linux.c, which does what
# `blk bench` does (O_DIRECT, the same offsets, bounds and batching, Linux AIO above queue depth
# 1) and prints the same line. Each boot runs every measurement once as a warm-up (discarded),
# then BENCH_REPEAT rounds of all of them in turn (round-robin, so a slow spell of the host hits
# every measurement alike); the rounds are marked `BENCH-ROUND warmup|N` in the transcripts. The
# median run counts. A cross-check times busybox `dd iflag=direct` over 64 MiB in Linux too.
#
# Prints a table: metric, capmon, Linux, ratio, goal, met? (judged on the medians). A benchmark,
# not a test: a missed goal does not fail; exit status 1 only if something could not be measured.
#
# The caller sets, then calls bench_blk_main:
#   BENCH    its name (bench-blk): in messages, and the output folder build/$BENCH
#   DEV      the disk's name, the same in both guests (vda, nvme0n1)
#   DEVICE   the QEMU -device option that attaches drive bench-disk
#   MODULES  the Linux modules the disk needs, in load order (file names; built-in ones skipped)
#   MEASURE  an array, one measurement an element: "ACCESS DIR BYTES DEPTH GOAL LABEL..."
#            (GOAL: the capmon/Linux MB/s ratio to reach, like 1.5x, or - for none)
# Knobs: BENCH_REPEAT (7), BENCH_DISK_SIZE (256M), BENCH_ACCEL (tcg), BENCH_MEM (256M),
#        BENCH_SMP (1), BENCH_TIMEOUT (boot bound, s; 300), QEMU, CAPMON_ISO.
BUILD=build
OUT=$BUILD/$BENCH
LNX=$BUILD/bench-linux
ISO=${CAPMON_ISO:-$BUILD/capmon.iso}
QEMU=${QEMU:-qemu-system-x86_64}
REPEAT=${BENCH_REPEAT:-7}
DISK_SIZE=${BENCH_DISK_SIZE:-256M}
ACCEL=${BENCH_ACCEL:-tcg}
MEM=${BENCH_MEM:-256M}
SMP=${BENCH_SMP:-1}
TIMEOUT=${BENCH_TIMEOUT:-300}
DISK=$OUT/disk.img

say() { echo "$BENCH: $*" >&2; }
die() { say "$*"; exit 1; }

# shellcheck source=scripts/bench/linux.sh
. scripts/bench/linux.sh

# bench_args M: the measurement's words as both benches take them: "ACCESS DIR BYTES[ -q DEPTH]".
bench_args() {
    local access dir bytes depth
    read -r access dir bytes depth _ <<<"$1"
    printf '%s %s %s' "$access" "$dir" "$bytes"
    if [ "$depth" -gt 1 ]; then printf ' -q %s' "$depth"; fi
}

# result_key M: how its result line starts after the device name: "ACCESS DIR BYTES[ qdDEPTH]:".
result_key() {
    local access dir bytes depth
    read -r access dir bytes depth _ <<<"$1"
    printf '%s %s %s' "$access" "$dir" "$bytes"
    if [ "$depth" -gt 1 ]; then printf ' qd%s' "$depth"; fi
    printf ':'
}

# The initramfs: busybox, the helper, the modules, and an init that measures and powers off.
build_initramfs() {
    local vmlinuz=$1 stage m load runs=""
    stage=$OUT/initramfs
    rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
    cp "$LNX/root/bin/busybox" "$stage/bin/busybox"
    gcc -O2 -static -Wall -Wextra -o "$stage/bin/bench-blk-linux" scripts/bench-blk-linux.c
    # shellcheck disable=SC2086
    load=$(stage_modules "$vmlinuz" "$stage/lib/modules" $MODULES)
    for m in "${MEASURE[@]}"; do
        runs="$runs        bench-blk-linux /dev/$DEV $(bench_args "$m") || echo \"BENCH-ERROR $(bench_args "$m")\"
"
    done
    cat >"$stage/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in$load; do insmod /lib/modules/\$m.ko || echo "BENCH-ERROR insmod \$m"; done
i=0
while [ ! -b /dev/$DEV ] && [ \$i -lt 200 ]; do sleep 0.1; i=\$((i + 1)); done
if [ -b /dev/$DEV ]; then
    echo "BENCH-LINUX \$(uname -r) $DEV \$(cat /sys/block/$DEV/size) sectors"
    for r in warmup \$(seq $REPEAT); do
        echo "BENCH-ROUND \$r"
$runs    done
    t0=\$(bench-blk-linux now)
    dd if=/dev/$DEV of=/dev/null bs=1048576 count=64 iflag=direct 2>/dev/null || echo "BENCH-ERROR dd"
    t1=\$(bench-blk-linux now)
    echo "BENCH-DD seq read 64 MiB in \$(( (t1 - t0) / 1000 )) us"
else
    echo "BENCH-ERROR no /dev/$DEV"
fi
echo BENCH-DONE
poweroff -f
EOF
    chmod +x "$stage/init"
    local bb=$PWD/$LNX/root/bin/busybox
    (cd "$stage" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) \
        | gzip -9 >"$OUT/initramfs.cpio.gz"
}

# The scratch disk: random bytes, so no GPT; rewritten by the write runs, which is fine.
make_disk() {
    local want
    want=$(numfmt --from=iec "$DISK_SIZE")
    if [ ! -f "$DISK" ] || [ "$(stat -c %s "$DISK")" != "$want" ]; then
        say "making $DISK ($DISK_SIZE of random bytes)"
        head -c "$want" /dev/urandom >"$DISK.tmp" && mv "$DISK.tmp" "$DISK"
    fi
}

# The one QEMU command line both guests share; only the boot media differ.
qemu_common() {
    echo "$QEMU -accel $ACCEL -machine q35 -m $MEM -smp $SMP -display none -serial stdio" \
         "-monitor none -no-reboot" \
         "-drive if=none,id=bench-disk,format=raw,file=$DISK,cache=none,aio=threads $DEVICE"
}

# stats LOG M: "median-MB/s its-mean-us best-MB/s runs" of M's result lines outside the warm-up.
stats() {
    after_warmup "$1" \
        | sed -n "s/.*bench $DEV $(result_key "$2") .* in [0-9]* ms: \([0-9.]*\) MB\/s, [0-9]* IOPS, mean \([0-9]*\) us.*/\1 \2/p" \
        | median_best
}

# row M: one table entry; clears `status` if M was not measured in both guests.
row() {
    local goal label
    read -r _ _ _ _ goal label <<<"$1"
    compare_row "$label" "$goal" MB/s 12 "mean request latency of the median run" \
        "$(stats "$OUT/capmon.log" "$1")" "$(stats "$OUT/linux.log" "$1")" || status=1
}

bench_blk_main() {
    local m vmlinuz common dd
    [ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
    command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"
    command -v gcc >/dev/null || die "gcc not found: needed for the Linux-side helper"
    mkdir -p "$OUT"
    vmlinuz=$(fetch_linux)
    build_initramfs "$vmlinuz"
    make_disk
    common=$(qemu_common)
    say "QEMU: $common"

    # ---- capmon ----
    # Writes need -f: capmon refuses to overwrite a disk unless told (the scratch disk has no GPT,
    # but say so anyway).
    local cmds=() r dir force
    for r in warmup $(seq "$REPEAT"); do
        cmds+=(--cmd "echo BENCH-ROUND $r")
        for m in "${MEASURE[@]}"; do
            read -r _ dir _ <<<"$m"
            force=""
            if [ "$dir" = write ]; then force=" -f"; fi
            cmds+=(--cmd "blk bench $DEV $(bench_args "$m")$force")
        done
    done
    say "capmon: booting $ISO (a warm-up and $REPEAT rounds of ${#MEASURE[@]} measurements)"
    # shellcheck disable=SC2086
    python3 scripts/bench-blk-guest.py --log "$OUT/capmon.log" --timeout "$TIMEOUT" "${cmds[@]}" \
        -- $common -boot d -cdrom "$ISO" || say "capmon run did not end cleanly (see $OUT/capmon.log)"
    grep -h -e 'no such block device' -e "^$DEV: " "$OUT/capmon.log" | sort | uniq -c | head -n5 >&2 || true

    # ---- Linux ----
    say "linux: booting ${vmlinuz##*/} with the busybox initramfs"
    # shellcheck disable=SC2086
    python3 scripts/bench-blk-guest.py --log "$OUT/linux.log" --timeout "$TIMEOUT" \
        -- $common -kernel "$vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1" || say "linux run did not end cleanly (see $OUT/linux.log)"
    grep -h 'BENCH-ERROR' "$OUT/linux.log" >&2 || true

    # ---- Results ----
    # The machine is shared and TCG is sensitive to host load, which only ever slows a run down;
    # the median is what is judged, the best run is shown beside it.
    status=0
    printf '\n%-24s %12s %12s %7s %5s %s\n' metric capmon Linux ratio goal met?
    for m in "${MEASURE[@]}"; do
        row "$m"
    done
    dd=$(sed -n 's/.*BENCH-DD seq read 64 MiB in \([0-9]*\) us.*/\1/p' "$OUT/linux.log" | tail -n1)
    if [ -n "$dd" ] && [ "$dd" -gt 0 ]; then
        awk -v us="$dd" 'BEGIN { printf "cross-check: Linux busybox dd iflag=direct bs=1M count=64: %.1f MB/s\n", 67108864 / us }'
    fi
    echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
    echo "capmon: $ISO; Linux: ${vmlinuz##*/}; transcripts: $OUT/capmon.log $OUT/linux.log"
    return $status
}
