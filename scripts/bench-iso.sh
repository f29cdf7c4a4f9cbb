#!/usr/bin/env bash
# scripts/bench-iso.sh: `make bench-iso`. A sequential read of a BENCH_MIB (64) MiB file from a
# CD: capmon's `iso bench` against a Linux guest reading the same file from the same CD image
# through isofs (page cache dropped before each read), on the same QEMU command line:
#   -M pc:  capmon's ATAPI PIO on the PIIX IDE, Linux's ata_piix (the cloud kernel);
#   q35:    capmon's AHCI, Linux's ahci (the generic kernel: the cloud one has no ahci).
# The CD is a drive of its own (cache=none) beside capmon's boot CD; Linux boots with -kernel.
# BENCH_BOOTS (3) interleaved capmon/Linux boot pairs per machine, each a warm-up and
# BENCH_REPEAT (3) reads; the table shows medians and ratios. Goal: AHCI >= 1.0x Linux.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
BENCH=bench-iso
BUILD=build
OUT=$BUILD/$BENCH
LNX=$BUILD/bench-linux
ISO=${CAPMON_ISO:-$BUILD/capmon.iso}
QEMU=${QEMU:-qemu-system-x86_64}
BOOTS=${BENCH_BOOTS:-3}
REPEAT=${BENCH_REPEAT:-3}
MIB=${BENCH_MIB:-64}
TIMEOUT=${BENCH_TIMEOUT:-600}
PATH=$PATH:/usr/sbin:/sbin

say() { echo "$BENCH: $*" >&2; }
die() { say "$*"; exit 1; }
. scripts/bench/linux.sh

[ -f "$ISO" ] || die "$ISO missing: run 'make iso' first"
command -v xorriso >/dev/null || die "xorriso not found (scripts/setup.sh installs it)"
command -v gcc >/dev/null || die "gcc not found: needed for the Linux-side reader"
mkdir -p "$OUT"

# The data CD: one file of pattern bytes.
CD=$OUT/bench.iso
if [ ! -f "$CD" ] || [ "$(stat -c %s "$OUT/cd/big.bin" 2>/dev/null)" != $((MIB << 20)) ]; then
    rm -rf "$OUT/cd" && mkdir -p "$OUT/cd"
    python3 scripts/blkpattern.py write "$OUT/cd/big.bin" seed:7 0 "${MIB}M" 2>/dev/null \
        || head -c "$((MIB << 20))" /dev/urandom >"$OUT/cd/big.bin"
    xorriso -as mkisofs -quiet -R -V BENCHCD -o "$CD" "$OUT/cd" || die "xorriso failed"
fi

# Kernels: the cloud one (ata_piix) and the generic one (ahci), cached in $LNX.
CLOUD=$(fetch_linux)
fetch_generic() {
    local v
    v=$(ls "$LNX"/generic/root/boot/vmlinuz-*-amd64 2>/dev/null | head -n1 || true)
    if [ -n "$v" ]; then echo "$v"; return; fi
    say "fetching linux-image-amd64 (the generic kernel, for its ahci driver) into $LNX/generic"
    download linux-image-amd64
    local meta dep
    meta=$(ls "$LNX"/debs/linux-image-amd64_*.deb | head -n1)
    dep=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*-amd64\).*/\1/p' | head -n1)
    [ -n "$dep" ] || die "cannot find the kernel package $meta depends on"
    download "$dep"
    rm -rf "$LNX/generic" && mkdir -p "$LNX/generic/root"
    dpkg-deb -x "$(ls "$LNX"/debs/"$dep"_*.deb | head -n1)" "$LNX/generic/root"
    ls "$LNX"/generic/root/boot/vmlinuz-*-amd64 | head -n1
}
GENERIC=$(fetch_generic)

# initramfs KERNEL MODULES... -> $OUT/initramfs-NAME.cpio.gz: mounts /dev/sr0 as iso9660 and
# reads big.bin a warm-up and REPEAT times.
initramfs() {
    local vmlinuz=$1 tag=$2 stage load
    shift 2
    stage=$OUT/initramfs-$tag
    rm -rf "$stage" && mkdir -p "$stage"/{bin,dev,proc,sys,mnt,lib/modules}
    cp "$LNX/root/bin/busybox" "$stage/bin/busybox"
    gcc -O2 -static -Wall -Wextra -o "$stage/bin/bench-iso-linux" scripts/bench-iso-linux.c \
        || die "building scripts/bench-iso-linux.c failed"
    local saved=$LNX
    # stage_modules looks under $LNX/root: the tree the kernel was unpacked into.
    LNX=$(dirname "$(dirname "$(dirname "$vmlinuz")")")
    load=$(stage_modules "$vmlinuz" "$stage/lib/modules" "$@")
    LNX=$saved
    cat >"$stage/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# bench.pio on the command line: libata without DMA (its dma=0 is a module parameter, which
# insmod takes directly).
args=
for m in$load; do
    args=
    if [ \$m = libata ] && grep -q bench.pio /proc/cmdline; then args=dma=0; fi
    insmod /lib/modules/\$m.ko \$args || echo "BENCH-ERROR insmod \$m"
done
i=0
while [ ! -b /dev/sr0 ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
if mount -t iso9660 -o ro /dev/sr0 /mnt; then
    echo "BENCH-LINUX \$(uname -r) sr0 \$(cat /sys/block/sr0/size) sectors"
    echo "BENCH-ROUND warmup"
    /bin/bench-iso-linux /mnt/big.bin
    for r in \$(seq 1 $REPEAT); do
        echo "BENCH-ROUND \$r"
        /bin/bench-iso-linux /mnt/big.bin
    done
    umount /mnt
else
    echo "BENCH-ERROR mount /dev/sr0"
fi
echo BENCH-DONE
poweroff -f
INIT
    chmod +x "$stage/init"
    local bb=$PWD/$LNX/root/bin/busybox
    (cd "$stage" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null) | gzip -9 >"$OUT/initramfs-$tag.cpio.gz"
}
initramfs "$CLOUD" pc scsi_common scsi_mod libata ata_piix cdrom sr_mod isofs
initramfs "$GENERIC" q35 scsi_common scsi_mod libata libahci ahci cdrom sr_mod isofs

# qemu MACHINE: the common command line; the data CD on the first port/channel, cache=none.
qemu() {
    echo "$QEMU -accel tcg -machine $1 -m 256M -smp 1 -display none -serial stdio -monitor none" \
         "-no-reboot -drive file=$CD,if=none,id=benchcd,media=cdrom,readonly=on,cache=none" \
         "-device ide-cd,drive=benchcd,bus=ide.0"
}

run_capmon() {  # run_capmon MACHINE LOG
    local cmds=(--cmd "echo BENCH-ROUND warmup" --cmd "iso bench -d cd0 /big.bin") r
    for r in $(seq 1 "$REPEAT"); do
        cmds+=(--cmd "echo BENCH-ROUND $r" --cmd "iso bench -d cd0 /big.bin")
    done
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$2" --timeout "$TIMEOUT" --cmd-timeout "$TIMEOUT" \
        --cmd "iso -d cd0" "${cmds[@]}" -- $(qemu "$1") -cdrom "$ISO" -boot d \
        || say "capmon run did not end cleanly (see $2)"
}

run_linux() {  # run_linux MACHINE KERNEL TAG LOG [APPEND]
    # shellcheck disable=SC2046
    python3 scripts/bench-blk-guest.py --log "$4" --timeout "$TIMEOUT" -- $(qemu "$1") \
        -kernel "$2" -initrd "$OUT/initramfs-$3.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 ${5:-}" \
        || say "linux run did not end cleanly (see $4)"
    grep -h -e BENCH-ERROR "$4" >&2 || true
}

# values LOG PREFIX: "MB/s us" per measured (non-warm-up) round.
values() {
    after_warmup "$1" | sed -n "s/^$2 \/\(mnt\/\)\{0,1\}big\.bin: [0-9]* bytes in \([0-9]*\) us: \([0-9.]*\) MB\/s.*/\3 \2/p"
}

say "data CD: $CD ($MIB MiB big.bin); kernels: $(basename "$CLOUD") (pc), $(basename "$GENERIC") (q35)"
for m in pc q35; do
    case $m in pc) k=$CLOUD ;; q35) k=$GENERIC ;; esac
    for b in $(seq 1 "$BOOTS"); do
        say "$m, boot pair $b of $BOOTS: capmon"
        run_capmon "$m" "$OUT/capmon-$m-$b.log"
        say "$m, boot pair $b of $BOOTS: linux $(basename "$k")"
        run_linux "$m" "$k" "$m" "$OUT/linux-$m-$b.log"
        if [ "$m" = pc ]; then
            say "$m, boot pair $b of $BOOTS: linux $(basename "$k"), libata dma=0 (PIO)"
            run_linux "$m" "$k" "$m" "$OUT/linux-pcpio-$b.log" bench.pio
        fi
    done
done

echo
printf "%-24s %15s %15s %7s %5s %s\n" "metric" "capmon" "Linux" "ratio" "goal" "met?"
fail=0
for m in pc pcpio q35; do
    c=$(for f in "$OUT"/capmon-${m%pio}-*.log; do values "$f" "iso bench"; done | median_best)
    l=$(for f in "$OUT"/linux-$m-*.log; do values "$f" "linux bench"; done | median_best)
    case $m in
        pc) label="read ${MIB}M, ATAPI PIO"; goal=- ;;
        pcpio) label="  vs Linux in PIO"; goal=- ;;
        q35) label="read ${MIB}M, AHCI"; goal=1.0x ;;
    esac
    compare_row "$label" "$goal" "MB/s" 15 "mean read time of the median run" "$c" "$l" || fail=1
done
echo
echo "each read: the whole file once, capmon 256 KiB a request (iso bench), Linux 1 MiB read()s"
echo "     after drop_caches (isofs over sr_mod; readahead as the kernel does it)"
echo "-M pc: capmon drives the PIIX IDE in PIO only; Linux's ata_piix uses bus-master DMA, and"
echo "     libata dma=0 (the row below it) makes it use PIO as capmon does"
echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) (TCG numbers drift with it)"
echo "transcripts: $OUT/capmon-*.log $OUT/linux-*.log"
exit $fail
