#!/usr/bin/env bash
# scripts/bench-blk.sh (make bench-blk): capmon's virtio-blk against Linux's, on the same QEMU.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs on the identical QEMU
# command line with one virtio-blk scratch disk (cache=none) and measures in both: sequential
# 1 MiB reads, random 4 KiB reads at queue depth 1 and 32, and sequential 1 MiB writes. capmon
# runs `blk bench vda ...`, Linux scripts/bench-blk-linux.c on /dev/vda. capmon's virtio-blk
# keeps at most 4 requests in flight (one per bounce slot), Linux's up to the queue's 256: the
# QD32 row has no goal. How it runs, what it prints, its knobs: scripts/bench/blk.sh.
#
# Needs no root-owned install: the Linux kernel and busybox come from `apt-get download` +
# `dpkg-deb -x` into build/bench-linux/ (cached; `apt-get update` once if the lists are stale).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=bench-blk
DEV=vda
DEVICE="-device virtio-blk-pci,drive=bench-disk"
# The virtio modules in the order they must be loaded; the built-in ones are skipped.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
MEASURE=(
    "seq  read  1048576 1  1.0x seq read 1 MiB"
    "rand read  4096    1  1.5x rand read 4 KiB QD1"
    "rand read  4096    32 -    rand read 4 KiB QD32"
    "seq  write 1048576 1  -    seq write 1 MiB"
)
# shellcheck source=scripts/bench/blk.sh
. scripts/bench/blk.sh
bench_blk_main
