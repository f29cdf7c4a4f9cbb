# shellcheck shell=bash
# scripts/bench/store.sh: the body of `make bench-store`, sourced by scripts/bench-store.sh (which
# sets what is measured and the goals).
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs (scripts/bench/linux.sh)
# on the identical QEMU command line: machine, memory, CPUs, accelerator, and one raw virtio-blk
# disk of BENCH_DISK_SIZE with cache=none,aio=threads (so neither guest is served from the host's
# page cache). Only the boot media and the disk's file differ. Both disks are made anew each run,
# zero-filled (fully allocated on the host, so neither guest's first writes pay for the host's
# allocation), with the same GPT layout: one partition from sector 2048 to the end, vda1 in
# both guests.
#   capmon: the partition has the store's type GUID ($STORE_TYPE); capmon formats it itself
#     (`$STORE_FORMAT`, answered with `formatted`) before the rounds, then runs
#     `store bench -n N SIZES...`: per size, N puts (one new object each, committed durably: the
#     commit flushes the disk), then N gets (each object read back and its bytes verified).
#   Linux: the partition (type 8300) holds an ext4 made here by mkfs.ext4 (inode tables and
#     journal zeroed now, so no ext4lazyinit thread writes behind the benchmark), mounted with
#     the defaults (data=ordered, barriers on); scripts/bench-store-linux.c does the same with
#     files: create, write, fsync the file, fsync the directory, close; then read back and
#     compare (it times the system calls and the comparison, not making each file's bytes).
#     ext4 and what it needs (crc16, crc32c, mbcache, jbd2) are built into Debian's cloud
#     kernel; any that a kernel has as modules are loaded from the initramfs like virtio's.
#     (crc32c-intel is not loaded: QEMU's default CPU model has no SSE4.2.)
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
# Knobs: BENCH_REPEAT (7), BENCH_OBJECTS (N, 200), BENCH_DISK_SIZE (256M), BENCH_ACCEL (tcg),
#        BENCH_MEM (256M), BENCH_SMP (1), BENCH_TIMEOUT (boot bound, s; 300), BENCH_CMD_TIMEOUT
#        (bound per round, s; 600), QEMU, CAPMON_ISO.
BUILD=build
OUT=$BUILD/$BENCH
LNX=$BUILD/bench-linux
ISO=${CAPMON_ISO:-$BUILD/capmon.iso}
QEMU=${QEMU:-qemu-system-x86_64}
REPEAT=${BENCH_REPEAT:-7}
OBJECTS=${BENCH_OBJECTS:-200}
DISK_SIZE=${BENCH_DISK_SIZE:-256M}
ACCEL=${BENCH_ACCEL:-tcg}
MEM=${BENCH_MEM:-256M}
SMP=${BENCH_SMP:-1}
TIMEOUT=${BENCH_TIMEOUT:-300}
CMD_TIMEOUT=${BENCH_CMD_TIMEOUT:-600}
CAPMON_DISK=$OUT/capmon-disk.img
LINUX_DISK=$OUT/linux-disk.img
# sgdisk and mkfs.ext4 live in sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

say() { echo "$BENCH: $*" >&2; }
die() { say "$*"; exit 1; }

# shellcheck source=scripts/bench/linux.sh
. scripts/bench/linux.sh

# The sizes the rounds' command takes: the BYTES of MEASURE, each once, in order.
sizes() {
    local m bytes out=()
    for m in "${MEASURE[@]}"; do
        read -r _ bytes _ <<<"$m"
        [[ " ${out[*]} " == *" $bytes "* ]] || out+=("$bytes")
    done
    echo "${out[*]}"
}

# The initramfs: busybox, the helper, the modules, and an init that mounts the ext4 partition,
# measures and powers off.
build_initramfs() {
    local vmlinuz=$1 stage load
    stage=$OUT/initramfs
    rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,mnt,lib/modules}
    cp "$LNX/root/bin/busybox" "$stage/bin/busybox"
    gcc -O2 -static -Wall -Wextra -o "$stage/bin/bench-store-linux" scripts/bench-store-linux.c
    # shellcheck disable=SC2086
    load=$(stage_modules "$vmlinuz" "$stage/lib/modules" $MODULES)
    cat >"$stage/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in$load; do insmod /lib/modules/\$m.ko || echo "BENCH-ERROR insmod \$m"; done
i=0
while [ ! -b /dev/$PART ] && [ \$i -lt 200 ]; do sleep 0.1; i=\$((i + 1)); done
if [ ! -b /dev/$PART ]; then
    echo "BENCH-ERROR no /dev/$PART"
elif ! mount -t ext4 /dev/$PART /mnt; then
    echo "BENCH-ERROR mount -t ext4 /dev/$PART"
else
    echo "BENCH-LINUX \$(uname -r) $PART \$(cat /sys/class/block/$PART/size) sectors," \
         "\$(grep ' /mnt ' /proc/mounts), $DEV write cache: \$(cat /sys/block/$DEV/queue/write_cache)"
    cd /mnt
    for r in warmup \$(seq $REPEAT); do
        echo "BENCH-ROUND \$r"
        bench-store-linux -n $OBJECTS $(sizes) || echo "BENCH-ERROR bench-store-linux round \$r"
    done
    cd /
    umount /mnt || echo "BENCH-ERROR umount /mnt"
fi
echo BENCH-DONE
poweroff -f
EOF
    chmod +x "$stage/init"
    local bb=$PWD/$LNX/root/bin/busybox
    (cd "$stage" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) \
        | gzip -9 >"$OUT/initramfs.cpio.gz"
}

# make_disk FILE TYPE NAME: FILE anew, DISK_SIZE of zeros, with a GPT of one partition of TYPE
# from sector 2048 to the end; prints the partition's first and last sector.
make_disk() {
    local file=$1 type=$2 name=$3 info first last
    head -c "$(numfmt --from=iec "$DISK_SIZE")" /dev/zero >"$file.tmp"
    sgdisk --clear --new=1:2048:0 --typecode=1:"$type" --change-name=1:"$name" "$file.tmp" >/dev/null \
        || die "sgdisk on $file failed"
    info=$(sgdisk --info=1 "$file.tmp")
    first=$(sed -n 's/^First sector: \([0-9]*\).*/\1/p' <<<"$info")
    last=$(sed -n 's/^Last sector: \([0-9]*\).*/\1/p' <<<"$info")
    [ -n "$first" ] && [ -n "$last" ] || die "no partition 1 on $file: $info"
    mv "$file.tmp" "$file"
    echo "$first $last"
}

# Both scratch disks, anew; Linux's partition gets its ext4 here, capmon formats its own.
make_disks() {
    local range first last
    say "making $CAPMON_DISK and $LINUX_DISK ($DISK_SIZE each, GPT, one partition)"
    make_disk "$CAPMON_DISK" "$STORE_TYPE" capmon-store >/dev/null
    range=$(make_disk "$LINUX_DISK" 8300 bench-ext4)
    read -r first last <<<"$range"
    # 4 KiB blocks over the whole partition; -E offset writes it in place inside the image.
    mkfs.ext4 -q -F -b 4096 -L bench-ext4 \
        -E offset=$((first * 512)),nodiscard,lazy_itable_init=0,lazy_journal_init=0 \
        "$LINUX_DISK" $(((last - first + 1) * 512 / 4096)) || die "mkfs.ext4 on $LINUX_DISK failed"
}

# qemu_common DISK: the one QEMU command line both guests share; only the boot media and the
# disk's file differ.
qemu_common() {
    echo "$QEMU -accel $ACCEL -machine q35 -m $MEM -smp $SMP -display none -serial stdio" \
         "-monitor none -no-reboot" \
         "-drive file=$1,if=none,id=bench-disk,format=raw,cache=none,aio=threads $DEVICE"
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
    local vmlinuz r m
    [ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
    command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"
    command -v gcc >/dev/null || die "gcc not found: needed for the Linux-side helper"
    command -v sgdisk >/dev/null || die "sgdisk not found (package gdisk; scripts/setup.sh installs it)"
    command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (package e2fsprogs; scripts/setup.sh installs it)"
    mkdir -p "$OUT"
    vmlinuz=$(fetch_linux)
    build_initramfs "$vmlinuz"
    make_disks
    say "QEMU: $(qemu_common DISK) (DISK: $CAPMON_DISK for capmon, $LINUX_DISK for Linux)"
    say "each round: store bench -n $OBJECTS $(sizes)"

    # ---- capmon ----
    local cmds=()
    # The store is formatted once per boot, before the warm-up round. The one line to change if
    # the command's spelling changes (its reply must contain `formatted`):
    cmds+=(--cmd "$STORE_FORMAT")
    for r in warmup $(seq "$REPEAT"); do
        cmds+=(--cmd "echo BENCH-ROUND $r" --cmd "store bench -n $OBJECTS $(sizes)")
    done
    say "capmon: booting $ISO (format $PART, a warm-up and $REPEAT rounds)"
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$OUT/capmon.log" --timeout "$TIMEOUT" \
        --cmd-timeout "$CMD_TIMEOUT" "${cmds[@]}" \
        -- $(qemu_common "$CAPMON_DISK") -boot d -cdrom "$ISO" \
        || say "capmon run did not end cleanly (see $OUT/capmon.log)"
    if grep -q "unknown command 'store'" "$OUT/capmon.log"; then
        say "capmon has no 'store' command (yet): nothing measured on its side"
    elif ! format_reply | grep -qw formatted || format_reply | grep -qi -e error -e 'not formatted'; then
        say "'$STORE_FORMAT' did not answer 'formatted': $(format_reply | head -n3)"
    fi
    grep -h -e '^error' -e 'command aborted' "$OUT/capmon.log" | sort | uniq -c | head -n5 >&2 || true

    # ---- Linux ----
    # Its init runs every round itself: the bound is the boot's plus one per round.
    say "linux: booting ${vmlinuz##*/} with the busybox initramfs"
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$OUT/linux.log" \
        --timeout $((TIMEOUT + (REPEAT + 1) * CMD_TIMEOUT)) \
        -- $(qemu_common "$LINUX_DISK") -kernel "$vmlinuz" -initrd "$OUT/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1" \
        || say "linux run did not end cleanly (see $OUT/linux.log)"
    grep -h -e 'BENCH-ERROR' -e '^bench-store-linux:' "$OUT/linux.log" >&2 || true

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
    echo "     $(linux_mount_note)"
    echo "get: the round's objects read back and verified right after their puts, caches warm in"
    echo "     both guests (Linux's page cache is not dropped): a warm read-back, not a cold read"
    echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
    echo "capmon: $ISO; Linux: ${vmlinuz##*/}; transcripts: $OUT/capmon.log $OUT/linux.log"
    return $status
}

# What capmon printed in reply to $STORE_FORMAT (the lines up to the next prompt).
format_reply() {
    awk -v cmd="capmon> $STORE_FORMAT" '$0 == cmd { on = 1; next } /^capmon> / { on = 0 } on' \
        "$OUT/capmon.log"
}

# The ext4 mount options and the disk's write cache mode, as the Linux guest reported them.
linux_mount_note() {
    sed -n 's/^BENCH-LINUX .* ext4 \([^ ]*\) .*write cache: \(.*\)$/(mounted \1; write cache: \2)/p' \
        "$OUT/linux.log" | head -n1
}
