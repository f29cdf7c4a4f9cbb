#!/usr/bin/env bash
# scripts/bench-blk.sh (make bench-blk): capmon's virtio-blk against Linux's, on the same QEMU.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs on the identical
# QEMU command line (machine, memory, CPUs, accelerator, one virtio-blk scratch disk without a
# GPT) and measures in both: sequential 1 MiB reads, random 4 KiB reads at queue depth 1, and
# sequential 1 MiB writes. capmon runs `blk bench vda ...`; Linux runs scripts/bench-blk-linux.c,
# which does what `blk bench` does (O_DIRECT, one request at a time, same offsets and bounds)
# and prints the same line. Each measurement is repeated BENCH_REPEAT times in the same boot;
# the median counts. A cross-check times busybox `dd iflag=direct` over 64 MiB too.
#
# Prints a table: metric, capmon, Linux, ratio, goal, met?. A benchmark, not a test: a missed
# goal does not fail; exit status 1 only if something could not be measured.
#
# Needs no root-owned install: the Linux kernel and busybox come from `apt-get download` +
# `dpkg-deb -x` into build/bench-linux/ (cached; `apt-get update` once if the lists are stale).
# Knobs: BENCH_REPEAT (7), BENCH_DISK_SIZE (256M), BENCH_ACCEL (tcg), BENCH_MEM (256M),
#        BENCH_SMP (1), BENCH_TIMEOUT (boot bound, s; 300), QEMU, CAPMON_ISO.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=build
OUT=$BUILD/bench-blk
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
# The virtio modules in the order they must be loaded; the built-in ones are skipped.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"

say() { echo "bench-blk: $*" >&2; }
die() { say "$*"; exit 1; }

[ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"
command -v gcc >/dev/null || die "gcc not found: needed for the Linux-side helper"
mkdir -p "$OUT" "$LNX/debs"

# ---- The Linux guest's parts: kernel image, modules, busybox (cached under build/) ----
# shellcheck source=scripts/bench/linux.sh
. scripts/bench/linux.sh

# The initramfs: busybox, the helper, the virtio modules, and an init that measures and powers off.
build_initramfs() {
    local vmlinuz=$1 kver moddir stage m ko
    kver=${vmlinuz##*/vmlinuz-}
    moddir=$LNX/root/lib/modules/$kver
    stage=$OUT/initramfs
    rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,lib/modules}
    cp "$LNX/root/bin/busybox" "$stage/bin/busybox"
    gcc -O2 -static -Wall -Wextra -o "$stage/bin/bench-blk-linux" scripts/bench-blk-linux.c
    local load=""
    for m in $MODULES; do
        if grep -q "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then
            continue
        fi
        ko=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
        [ -n "$ko" ] || die "$m is neither built into $kver nor a module"
        case $ko in *.xz) xz -dc "$ko" >"$stage/lib/modules/$m.ko" ;;
                    *.zst) zstd -qdc "$ko" >"$stage/lib/modules/$m.ko" ;;
                    *) cp "$ko" "$stage/lib/modules/$m.ko" ;; esac
        load="$load $m"
    done
    cat >"$stage/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in$load; do insmod /lib/modules/\$m.ko || echo "BENCH-ERROR insmod \$m"; done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 200 ]; do sleep 0.1; i=\$((i + 1)); done
if [ -b /dev/vda ]; then
    echo "BENCH-LINUX \$(uname -r) vda \$(cat /sys/block/vda/size) sectors"
    for r in \$(seq $REPEAT); do
        bench-blk-linux /dev/vda seq read 1048576 || echo "BENCH-ERROR seq read"
        bench-blk-linux /dev/vda rand read 4096 || echo "BENCH-ERROR rand read"
        bench-blk-linux /dev/vda seq write 1048576 || echo "BENCH-ERROR seq write"
    done
    t0=\$(bench-blk-linux now)
    dd if=/dev/vda of=/dev/null bs=1048576 count=64 iflag=direct 2>/dev/null || echo "BENCH-ERROR dd"
    t1=\$(bench-blk-linux now)
    echo "BENCH-DD seq read 64 MiB in \$(( (t1 - t0) / 1000 )) us"
else
    echo "BENCH-ERROR no /dev/vda"
fi
echo BENCH-DONE
poweroff -f
EOF
    chmod +x "$stage/init"
    local bb=$PWD/$LNX/root/bin/busybox
    (cd "$stage" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) \
        | gzip -9 >"$OUT/initramfs.cpio.gz"
}

# ---- The scratch disk: random bytes, so no GPT; rewritten by the write runs, which is fine ----
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
         "-drive if=none,id=bench-disk,format=raw,file=$DISK -device virtio-blk-pci,drive=bench-disk"
}

VMLINUZ=$(fetch_linux)
build_initramfs "$VMLINUZ"
make_disk
COMMON=$(qemu_common)
say "QEMU: $COMMON"

# ---- capmon ----
cmds=()
for _ in $(seq "$REPEAT"); do
    cmds+=(--cmd "blk bench vda seq read 1M" --cmd "blk bench vda rand read 4K"
           --cmd "blk bench vda seq write 1M -f")
done
say "capmon: booting $ISO ($REPEAT runs of each measurement)"
# shellcheck disable=SC2086
python3 scripts/bench-blk-guest.py --log "$OUT/capmon.log" --timeout "$TIMEOUT" "${cmds[@]}" \
    -- $COMMON -boot d -cdrom "$ISO" || say "capmon run did not end cleanly (see $OUT/capmon.log)"

# ---- Linux ----
say "linux: booting ${VMLINUZ##*/} with the busybox initramfs"
# shellcheck disable=SC2086
python3 scripts/bench-blk-guest.py --log "$OUT/linux.log" --timeout "$TIMEOUT" \
    -- $COMMON -kernel "$VMLINUZ" -initrd "$OUT/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1" || say "linux run did not end cleanly (see $OUT/linux.log)"
grep -h 'BENCH-ERROR' "$OUT/linux.log" >&2 || true

# ---- Results ----
# The machine is shared and TCG is sensitive to host load, which only ever slows a run down: the
# best of the runs is the figure compared, the median is shown beside it.
# stats LOG ACCESS DIR SIZE: "best-MB/s its-mean-us median-MB/s runs" of the matching lines.
stats() {
    tr '\r' '\n' <"$1" \
        | sed -n "s/.*bench vda $2 $3 $4: .* in [0-9]* ms: \([0-9.]*\) MB\/s, [0-9]* IOPS, mean \([0-9]*\) us.*/\1 \2/p" \
        | sort -g -k1,1 \
        | awk '{ v[NR] = $1; u[NR] = $2 } END { if (NR) print v[NR], u[NR], v[int((NR + 1) / 2)], NR }'
}

status=0
printf '\n%-22s %12s %12s %7s %5s %s\n' metric capmon Linux ratio goal met?
row() {  # row LABEL ACCESS DIR SIZE GOAL
    local c l
    c=$(stats "$OUT/capmon.log" "$2" "$3" "$4")
    l=$(stats "$OUT/linux.log" "$2" "$3" "$4")
    if [ -z "$c" ] || [ -z "$l" ]; then
        printf '%-22s %12s %12s %7s %5s %s\n' "$1" "${c%% *}" "${l%% *}" - "$5" "NOT MEASURED"
        status=1
        return
    fi
    awk -v label="$1" -v c="$c" -v l="$l" -v goal="$5" 'BEGIN {
        split(c, C, " "); split(l, L, " ")
        r = (L[1] > 0) ? C[1] / L[1] : 0
        g = goal; sub(/x$/, "", g)
        met = (goal == "-") ? "-" : ((r >= g) ? "yes" : "no")
        printf "%-22s %7.1f MB/s %7.1f MB/s %6.2fx %5s %s\n", label, C[1], L[1], r, goal, met
        printf "%-22s %9d us %9d us   (mean request latency of the best run)\n", "", C[2], L[2]
        printf "%-22s %7.1f MB/s %7.1f MB/s %6.2fx   (median of %d / %d runs)\n", "", C[3], L[3],
               (L[3] > 0) ? C[3] / L[3] : 0, C[4], L[4]
    }'
}
row "seq read 1 MiB"      seq  read  1048576 1.0x
row "rand read 4 KiB QD1" rand read  4096    1.5x
row "seq write 1 MiB"     seq  write 1048576 -
dd=$(sed -n 's/.*BENCH-DD seq read 64 MiB in \([0-9]*\) us.*/\1/p' "$OUT/linux.log" | tail -n1)
if [ -n "$dd" ] && [ "$dd" -gt 0 ]; then
    awk -v us="$dd" 'BEGIN { printf "cross-check: Linux busybox dd iflag=direct bs=1M count=64: %.1f MB/s\n", 67108864 / us }'
fi
echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
echo "capmon: $ISO; Linux: ${VMLINUZ##*/}; transcripts: $OUT/capmon.log $OUT/linux.log"
exit $status
