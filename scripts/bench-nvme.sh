#!/usr/bin/env bash
# scripts/bench-nvme.sh (make bench-nvme): capmon's NVMe driver against Linux's, on the same QEMU.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs on the identical QEMU
# command line with one NVMe scratch disk (QEMU's nvme device, serial bench0, cache=none) and
# measures in both: sequential 1 MiB reads, random 4 KiB reads at queue depth 1 and 32, and
# sequential 1 MiB writes. capmon runs `blk bench nvme0n1 ...`, Linux scripts/bench-blk-linux.c
# on /dev/nvme0n1 (queue depth 32 through Linux AIO). Goals on the medians: sequential reads at
# least twice Linux's, 4 KiB QD1 1.5 times, QD32 at least even. How it runs, what it prints, its
# knobs: scripts/bench/blk.sh.
#
# Needs no root-owned install: the Linux kernel and busybox come from `apt-get download` +
# `dpkg-deb -x` into build/bench-linux/ (cached; `apt-get update` once if the lists are stale).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=bench-nvme
DEV=nvme0n1
DEVICE="-device nvme,drive=bench-disk,serial=bench0"
# In load order; Debian's cloud kernel has both built in, so nothing is loaded there.
MODULES="nvme-core nvme"
MEASURE=(
    "seq  read  1048576 1  2.0x seq read 1 MiB"
    "rand read  4096    1  1.5x rand read 4 KiB QD1"
    "rand read  4096    32 1.0x rand read 4 KiB QD32"
    "seq  write 1048576 1  -    seq write 1 MiB"
)
# shellcheck source=scripts/bench/blk.sh
. scripts/bench/blk.sh
bench_blk_main
