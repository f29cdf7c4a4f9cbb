#!/usr/bin/env bash
# bench-boot.sh: boot time of capmon beside an empty Multiboot2 kernel (`make bench-boot`).
# For each firmware (SeaBIOS, OVMF): the median (and the minimum) of RUNS (5) boots of build/capmon.iso, from
# starting QEMU to the first "capmon> " prompt, and of an ISO with the same GRUB settings whose
# kernel (scripts/bench/empty.S, built here with as/ld) writes one byte to COM1 and halts.
# The difference is what capmon's own initialization costs. A benchmark: no pass/fail.
# Results also go to build/bench-boot.txt. QEMU runs under TCG, -m 256M, one vCPU.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
work=build/bench-boot
iso=build/capmon.iso
[ -f "$iso" ] || { echo "bench-boot: no $iso (run 'make iso')"; exit 1; }
rm -rf "$work" && mkdir -p "$work/iso/boot/grub"

# The baseline kernel and its ISO: scripts/grub.cfg with the kernel swapped, no module.
as --32 -o "$work/empty.o" scripts/bench/empty.S
ld -m elf_i386 -nostdlib -Ttext=0x100000 -e _start -o "$work/iso/boot/empty.elf" "$work/empty.o"
sed -e 's#/boot/capmon.elf#/boot/empty.elf#' -e '/module2/d' scripts/grub.cfg \
    >"$work/iso/boot/grub/grub.cfg"
grub-mkrescue -o "$work/empty.iso" "$work/iso" >"$work/grub-mkrescue.log" 2>&1 ||
    { cat "$work/grub-mkrescue.log"; exit 1; }

prompt_hex=$(printf 'capmon> ' | od -An -tx1 | tr -d ' \n')
out=build/bench-boot.txt
{
    echo "boot time: QEMU start to first output, $runs runs each, capmon and empty interleaved"
    echo "(TCG, q35, -m 256M, 1 vCPU); median, and the fastest run in brackets"
    printf '%-8s %22s %22s %20s %7s\n' firmware "capmon prompt" "empty kernel" "capmon init" ratio
} | tee "$out"
for fw in bios uefi; do
    python3 scripts/bench/boot_time.py --firmware "$fw" --runs "$runs" \
        --case capmon "$iso" "$prompt_hex" --case empty "$work/empty.iso" 06 >"$work/$fw.times" ||
        { echo "bench-boot: a $fw boot did not finish"; exit 1; }
    awk -v fw="$fw" '$2 == "median" { med[$1] = $3; min[$1] = $5 }
        END {
            c = med["capmon"]; e = med["empty"]
            printf "%-8s %9.3f s [%6.3f s] %9.3f s [%6.3f s] %8.3f s [%6.3f s] %6.2fx\n",
                toupper(fw), c, min["capmon"], e, min["empty"], c - e,
                min["capmon"] - min["empty"], c / e
        }' "$work/$fw.times" | tee -a "$out"
done
echo "each run: $work/bios.times, $work/uefi.times" | tee -a "$out"
