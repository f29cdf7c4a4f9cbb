# shellcheck shell=bash
# scripts/bench/ext4.sh: what the file-system benchmarks share (sourced by scripts/bench/store.sh
# for `make bench-store` and scripts/bench/fs.sh for `make bench-fs`): capmon on its store
# partition beside a Linux guest on ext4, on one QEMU command line.
#
# Both guests get one raw virtio-blk disk of BENCH_DISK_SIZE with cache=none,aio=threads (so
# neither is served from the host's page cache); only the boot media and the disk's file
# differ. Both disks are made anew (make_disks), zero-filled (fully allocated on the host, so
# neither guest's first writes pay for the host's allocation), with the same GPT: one partition
# from sector 2048 to the end, vda1 in both guests.
#   capmon: the partition has the store's type GUID ($STORE_TYPE); capmon formats it itself
#     ($STORE_FORMAT, answered with `formatted`).
#   Linux: the partition (type 8300) holds an ext4 made here by mkfs.ext4 (inode tables and
#     journal zeroed now, so no ext4lazyinit thread writes behind the benchmark), mounted with
#     the defaults (data=ordered, barriers on). ext4 and what it needs (crc16, crc32c,
#     mbcache, jbd2) are built into Debian's cloud kernel; any that a kernel has as modules
#     are loaded from the initramfs like virtio's. (crc32c-intel is not loaded: QEMU's default
#     CPU model has no SSE4.2.)
#
# The caller sets BENCH, DEV, PART, DEVICE, MODULES, STORE_TYPE and STORE_FORMAT (see
# scripts/bench-store.sh), defines `linux_measure` (the init's shell lines that measure, run in
# the mounted ext4), then uses build_initramfs, make_disks, qemu_common, run_capmon, run_linux,
# check_capmon, format_reply and linux_mount_note.
# Knobs: BENCH_DISK_SIZE (256M), BENCH_ACCEL (tcg), BENCH_MEM (256M), BENCH_SMP (1),
#        BENCH_TIMEOUT (boot bound, s; 300), BENCH_CMD_TIMEOUT (bound per command, s; 600),
#        QEMU, CAPMON_ISO.
BUILD=build
OUT=$BUILD/$BENCH
LNX=$BUILD/bench-linux
ISO=${CAPMON_ISO:-$BUILD/capmon.iso}
QEMU=${QEMU:-qemu-system-x86_64}
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

# check_tools: what every part below needs, or a clear message.
check_tools() {
    [ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
    command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"
    command -v gcc >/dev/null || die "gcc not found: needed for the Linux-side helper"
    command -v sgdisk >/dev/null || die "sgdisk not found (package gdisk; scripts/setup.sh installs it)"
    command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (package e2fsprogs; scripts/setup.sh installs it)"
    mkdir -p "$OUT"
}

# build_initramfs VMLINUZ HELPER.c: busybox, the helper (built static, in /bin under its own
# name), the modules, and an init that mounts the ext4 partition, runs `linux_measure` in it,
# unmounts and powers off. The init sees the kernel command line in $cmdline.
build_initramfs() {
    local vmlinuz=$1 helper=$2 stage load
    stage=$OUT/initramfs
    rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,mnt,lib/modules}
    cp "$LNX/root/bin/busybox" "$stage/bin/busybox"
    gcc -O2 -static -Wall -Wextra -o "$stage/bin/$(basename "$helper" .c)" "$helper" \
        || die "building $helper failed"
    # shellcheck disable=SC2086
    load=$(stage_modules "$vmlinuz" "$stage/lib/modules" $MODULES)
    cat >"$stage/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
cmdline=\$(cat /proc/cmdline)
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
$(linux_measure)
    cd /
    umount /mnt || echo "BENCH-ERROR umount /mnt"
fi
echo BENCH-DONE
poweroff -f
INIT
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

# make_disks: both scratch disks, anew; Linux's partition gets its ext4 here, capmon formats
# its own.
make_disks() {
    local range first last
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

# run_capmon LOG CMD...: boots capmon on $CAPMON_DISK, types each command (each bounded by
# CMD_TIMEOUT), powers off; the transcript in LOG.
run_capmon() {
    local log=$1 c cmds=()
    shift
    for c in "$@"; do cmds+=(--cmd "$c"); done
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$log" --timeout "$TIMEOUT" \
        --cmd-timeout "$CMD_TIMEOUT" "${cmds[@]}" \
        -- $(qemu_common "$CAPMON_DISK") -boot d -cdrom "$ISO" \
        || say "capmon run did not end cleanly (see $log)"
}

# run_linux LOG BOUND [APPEND]: boots the Linux guest on $LINUX_DISK, its init measuring, within
# BOUND seconds; APPEND goes on the kernel command line (the init sees it in $cmdline).
run_linux() {
    local log=$1 bound=$2 append=${3:-}
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$log" --timeout "$bound" \
        -- $(qemu_common "$LINUX_DISK") -kernel "$VMLINUZ" -initrd "$OUT/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 $append" \
        || say "linux run did not end cleanly (see $log)"
    grep -h -e 'BENCH-ERROR' -e '^bench-.*-linux:' "$log" >&2 || true
}

# check_capmon LOG NOUN: says why nothing was measured if capmon lacks the command NOUN or did
# not format its partition; names the errors it printed.
check_capmon() {
    local log=$1 noun=$2
    if grep -q "unknown command '$noun'" "$log"; then
        say "capmon has no '$noun' command (yet): nothing measured on its side"
    elif ! format_reply "$log" | grep -qw formatted || format_reply "$log" | grep -qi -e error -e 'not formatted'; then
        say "'$STORE_FORMAT' did not answer 'formatted': $(format_reply "$log" | head -n3)"
    fi
    grep -h -e '^error' -e 'command aborted' "$log" | sort | uniq -c | head -n5 >&2 || true
}

# format_reply LOG: what capmon printed in reply to $STORE_FORMAT (the lines up to the next
# prompt).
format_reply() {
    awk -v cmd="capmon> $STORE_FORMAT" '$0 == cmd { on = 1; next } /^capmon> / { on = 0 } on' "$1"
}

# linux_mount_note LOG: the ext4 mount options and the disk's write cache mode, as the Linux
# guest reported them.
linux_mount_note() {
    sed -n 's/^BENCH-LINUX .* ext4 \([^ ]*\) .*write cache: \(.*\)$/(mounted \1; write cache: \2)/p' \
        "$1" | head -n1
}
