#!/usr/bin/env bash
# scripts/bench-store.sh (make bench-store): capmon's persistent object store against files on
# ext4 in a Linux guest, on the same QEMU.
#
# Boots build/capmon.iso and a Debian cloud kernel with a busybox initramfs on the identical QEMU
# command line with one virtio-blk scratch disk (cache=none) each, GPT with one partition: in
# capmon the store's (capmon formats it with `store format vda1 -f`), in Linux an ext4 made on
# the host. Measures in both, per round, 200 objects of 4 KiB and 200 of 64 KiB: put (a new
# object made durable: capmon's commit flushes the disk, Linux fsyncs the file and its
# directory) and get (read back and verified, caches warm); each round then removes what it
# made, untimed. capmon runs `store bench -n 200 4096 65536`, Linux scripts/bench-store-linux.c
# in the mounted ext4. Goal on the medians: at least Linux's ops/s in all four. How it runs,
# what it prints, its knobs: scripts/bench/store.sh.
#
# Needs no root-owned install: the Linux kernel and busybox come from `apt-get download` +
# `dpkg-deb -x` into build/bench-linux/ (cached; `apt-get update` once if the lists are stale);
# sgdisk (gdisk) and mkfs.ext4 (e2fsprogs) work on image files.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=bench-store
DEV=vda
PART=vda1
DEVICE="-device virtio-blk-pci,drive=bench-disk"
# In load order, the built-in ones skipped: virtio's, then ext4's (Debian's cloud kernel builds
# crc16, crc32c_generic, mbcache, jbd2 and ext4 in, so only virtio's are loaded there).
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk
         crc16 crc32c_generic mbcache jbd2 ext4"
# drivers/block/src/gpt.rs CAPMON_DATA: the partition type capmon's store lives on.
STORE_TYPE=c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e
# Formats the store on the partition before the rounds; must answer with `formatted`.
STORE_FORMAT="store format $PART -f"
MEASURE=(
    "put 4096  1.0x put 4 KiB"
    "get 4096  1.0x get 4 KiB"
    "put 65536 1.0x put 64 KiB"
    "get 65536 1.0x get 64 KiB"
)
# shellcheck source=scripts/bench/store.sh
. scripts/bench/store.sh
bench_store_main
