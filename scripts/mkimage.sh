#!/usr/bin/env bash
# mkimage.sh: build capmon's bootable raw GPT disk image without root, loop
# devices or mounting.
#
# Layout (512-byte sectors, every partition 1 MiB aligned):
#   LBA 0            protective MBR (GRUB i386-pc boot.img code with --bios)
#   LBA 1..33        primary GPT header + entries
#   part 1  "ESP"    EFI System Partition, FAT32 (mformat -F), ESP_SIZE
#                      /EFI/BOOT/BOOTX64.EFI   GRUB standalone (config embedded)
#                                              or Limine's BOOTX64.EFI
#                      /boot/capmon.elf        the Multiboot2 kernel
#                      /boot/capmon.sym        optional stripped symbol copy
#                      /boot/limine/limine.conf (Limine only)
#   part 2  "capmon-data"  DATA_SIZE, a capmon store: with --data-tree DIR,
#                      `capmon-store mkfs` then `capmon-store import DIR`
#                      (the kernel's own storage code, tools/capmon-store;
#                      `make image` passes DATA_TREE, scripts/sample-tree);
#                      without it, left zeroed (sparse). capmon opens the
#                      store read-write at boot, so these bytes change on
#                      every boot
#                      type GUID c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e
#                      (the last 6 bytes spell "capmon" in ASCII)
#   part 3  "bios-boot"    1 MiB BIOS boot partition (EF02), only with --bios:
#                      holds GRUB's i386-pc core.img
#   last 33 LBAs     backup GPT entries + header
#
# The ESP is built as a separate file (build/esp.img) with mformat + mcopy and
# dd'd into place with conv=notrunc; the GPT is written by sgdisk on the image
# file; the store is written by capmon-store through that GPT. Disk and partition GUIDs are fixed (override with --disk-guid etc.) so
# two runs on the same inputs give the same partition table.
set -euo pipefail

# capmon data partition type GUID; documented in docs/cloud.md.
readonly CAPMON_DATA_TYPE="c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e"
readonly ESP_TYPE="EF00"
readonly BIOS_BOOT_TYPE="EF02"
readonly MIB=$((1024 * 1024))
readonly SECTOR=512

kernel=""
sym=""
out=""
esp_out=""
loader="grub"
limine_dir=""
esp_size="64M"
data_size="64M"
bios=0
store_tool=""
data_tree=""
disk_guid="c0a9d47a-0000-4000-8000-6361706d6f6e"
esp_guid="c0a9d47a-0001-4000-8000-6361706d6f6e"
data_guid="c0a9d47a-0002-4000-8000-6361706d6f6e"
bios_guid="c0a9d47a-0003-4000-8000-6361706d6f6e"
serial_speed=115200
grub_efi_dir="/usr/lib/grub/x86_64-efi"
grub_pc_dir="/usr/lib/grub/i386-pc"

usage() {
    cat <<EOF
usage: $0 --kernel ELF --out IMG [options]
  --kernel ELF        Multiboot2 kernel, copied to /boot/capmon.elf on the ESP
  --sym FILE          optional symbol file, copied to /boot/capmon.sym (loaded
                      as a module2 / module_path when present)
  --out IMG           raw disk image to write
  --esp-out FILE      where to keep the ESP image (default: IMG's dir/esp.img)
  --loader grub|limine  boot loader on the ESP (default grub)
  --limine-dir DIR    directory holding Limine's BOOTX64.EFI (--loader limine)
  --esp-size SIZE     ESP size, K/M/G suffix (default 64M; FAT32 needs >= 33M)
  --data-size SIZE    capmon data partition size (default 64M)
  --bios              also make the disk BIOS-bootable (GRUB i386-pc)
  --data-tree DIR     make the data partition a capmon store holding DIR's
                      files (needs --store-tool); default: left zeroed
  --store-tool BIN    the host tool that writes it (target/release/capmon-store)
  --serial-speed N    boot loader serial speed (default 115200)
EOF
    exit 2
}

die() { echo "mkimage: $*" >&2; exit 1; }

# put_le NBYTES VALUE FILE OFFSET: write VALUE little-endian at OFFSET.
put_le() {
    local n="$1" v="$2" f="$3" off="$4" s="" i
    for ((i = 0; i < n; i++)); do
        s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 0xff)))
    done
    # shellcheck disable=SC2059  # s holds only \xNN escapes
    printf "$s" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

# to_bytes SIZE: "64M" -> 67108864; plain numbers are bytes.
to_bytes() {
    local s="$1" n unit
    [[ "$s" =~ ^([0-9]+)([KMG]?)i?B?$ ]] || die "bad size '$s' (use e.g. 64M)"
    n="${BASH_REMATCH[1]}"
    unit="${BASH_REMATCH[2]}"
    case "$unit" in
        K) echo $((n * 1024)) ;;
        M) echo $((n * MIB)) ;;
        G) echo $((n * 1024 * MIB)) ;;
        *) echo "$n" ;;
    esac
}

while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel="${2:?}"; shift 2 ;;
        --sym) sym="${2:?}"; shift 2 ;;
        --out) out="${2:?}"; shift 2 ;;
        --esp-out) esp_out="${2:?}"; shift 2 ;;
        --loader) loader="${2:?}"; shift 2 ;;
        --limine-dir) limine_dir="${2:?}"; shift 2 ;;
        --esp-size) esp_size="${2:?}"; shift 2 ;;
        --data-size) data_size="${2:?}"; shift 2 ;;
        --bios) bios=1; shift ;;
        --data-tree) data_tree="${2:?}"; shift 2 ;;
        --store-tool) store_tool="${2:?}"; shift 2 ;;
        --serial-speed) serial_speed="${2:?}"; shift 2 ;;
        --disk-guid) disk_guid="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "mkimage: unknown argument '$1'" >&2; usage ;;
    esac
done

if [ -z "$kernel" ] || [ -z "$out" ]; then usage; fi
[ -f "$kernel" ] || die "kernel '$kernel' not found (build it first)"
if [ -n "$sym" ] && [ ! -f "$sym" ]; then
    sym=""   # the symbol module is optional
fi
case "$loader" in
    grub) ;;
    limine)
        [ -n "$limine_dir" ] || die "--loader limine needs --limine-dir"
        [ -f "$limine_dir/BOOTX64.EFI" ] || die "no BOOTX64.EFI in '$limine_dir'"
        ;;
    *) die "unknown loader '$loader' (grub or limine)" ;;
esac
[ "$bios" = 0 ] || [ "$loader" = grub ] || die "--bios is only made with --loader grub"
if [ -n "$data_tree" ]; then
    [ -d "$data_tree" ] || die "data tree '$data_tree' is not a directory"
    [ -n "$store_tool" ] || die "--data-tree needs --store-tool (cargo build -p capmon-store)"
    [ -x "$store_tool" ] || die "store tool '$store_tool' not found (cargo build -p capmon-store)"
fi
for tool in sgdisk mformat mcopy mmd dd truncate; do
    command -v "$tool" >/dev/null || die "'$tool' not found: run 'make setup'"
done
if [ "$loader" = grub ]; then
    command -v grub-mkstandalone >/dev/null || die "grub-mkstandalone not found: run 'make setup'"
    [ -d "$grub_efi_dir" ] || die "$grub_efi_dir missing: install grub-efi-amd64-bin"
fi
if [ "$bios" = 1 ]; then
    command -v grub-mkimage >/dev/null || die "grub-mkimage not found: run 'make setup'"
    [ -f "$grub_pc_dir/boot.img" ] || die "$grub_pc_dir/boot.img missing: install grub-pc-bin"
fi

esp_bytes=$(to_bytes "$esp_size")
data_bytes=$(to_bytes "$data_size")
[ $((esp_bytes % MIB)) -eq 0 ] || die "ESP size must be a whole number of MiB"
[ $((data_bytes % MIB)) -eq 0 ] || die "data size must be a whole number of MiB"
[ "$data_bytes" -gt 0 ] || die "data size must be > 0"
# FAT32 needs at least 65525 clusters; with 512-byte clusters that is ~33 MiB.
[ "$esp_bytes" -ge $((33 * MIB)) ] || die "ESP must be >= 33M to hold FAT32"

out_dir=$(dirname "$out")
mkdir -p "$out_dir"
[ -n "$esp_out" ] || esp_out="$out_dir/esp.img"
work=$(mktemp -d "${TMPDIR:-/tmp}/capmon-mkimage.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- 1. boot loader files ---------------------------------------------------
mkdir -p "$work/esp/EFI/BOOT" "$work/esp/boot"
cp "$kernel" "$work/esp/boot/capmon.elf"
[ -z "$sym" ] || cp "$sym" "$work/esp/boot/capmon.sym"

# grub.cfg shared by the EFI and BIOS images: the ESP is found by the kernel
# file it holds, so it works whatever the disk is called on the machine.
write_grub_cfg() {
    cat >"$1" <<EOF
serial --unit=0 --speed=$serial_speed --word=8 --parity=no --stop=1
terminal_input serial
terminal_output serial
set timeout=0
set default=0
search --no-floppy --file --set=root /boot/capmon.elf
# The GPT partition GUID of the ESP, so that capmon can name the block device it came from
# (Multiboot2 has no such tag under UEFI).
probe --set=capmon_part --part-uuid \$root
menuentry "capmon" {
    multiboot2 /boot/capmon.elf boot_part=\$capmon_part
    if [ -f /boot/capmon.sym ]; then
        module2 /boot/capmon.sym capmon.sym
    fi
    boot
}
EOF
}

# Modules the embedded configuration needs; listing them keeps BOOTX64.EFI
# small and the boot independent of any module directory on disk.
grub_modules=(part_gpt part_msdos fat search search_fs_file probe serial terminal
    multiboot2 normal configfile test echo boot)

if [ "$loader" = grub ]; then
    write_grub_cfg "$work/grub.cfg"
    grub-mkstandalone -O x86_64-efi -d "$grub_efi_dir" \
        --modules="${grub_modules[*]}" --install-modules="${grub_modules[*]}" \
        --locales= --fonts= --themes= \
        -o "$work/esp/EFI/BOOT/BOOTX64.EFI" \
        "boot/grub/grub.cfg=$work/grub.cfg"
else
    cp "$limine_dir/BOOTX64.EFI" "$work/esp/EFI/BOOT/BOOTX64.EFI"
    mkdir -p "$work/esp/boot/limine"
    {
        echo "timeout: 0"
        echo "serial: yes"
        echo
        echo "/capmon"
        echo "    protocol: limine"
        echo "    kernel_path: boot():/boot/capmon.elf"
        [ -z "$sym" ] || echo "    module_path: boot():/boot/capmon.sym"
    } >"$work/esp/boot/limine/limine.conf"
fi

# --- 2. ESP as its own FAT32 file -------------------------------------------
esp_tmp="$work/esp.img"
truncate -s "$esp_bytes" "$esp_tmp"
# -F: FAT32; -N: fixed serial so rebuilds are identical; -v: volume label.
mformat -i "$esp_tmp" -F -N 0ca9d47a -v CAPMON-ESP ::
mmd -i "$esp_tmp" ::/EFI ::/EFI/BOOT ::/boot
mcopy -i "$esp_tmp" -o "$work/esp/EFI/BOOT/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp_tmp" -o "$work/esp/boot/capmon.elf" ::/boot/capmon.elf
[ -z "$sym" ] || mcopy -i "$esp_tmp" -o "$work/esp/boot/capmon.sym" ::/boot/capmon.sym
if [ "$bios" = 1 ]; then
    # Read by the BIOS core.img (see step 5); the EFI image has its own copy.
    mmd -i "$esp_tmp" ::/boot/grub
    mcopy -i "$esp_tmp" -o "$work/grub.cfg" ::/boot/grub/grub.cfg
fi
if [ "$loader" = limine ]; then
    mmd -i "$esp_tmp" ::/boot/limine
    mcopy -i "$esp_tmp" -o "$work/esp/boot/limine/limine.conf" ::/boot/limine/limine.conf
fi

# --- 3. GPT on the image file -----------------------------------------------
# 1 MiB in front (MBR + primary GPT + alignment), 1 MiB behind (backup GPT).
bios_bytes=0
[ "$bios" = 0 ] || bios_bytes=$MIB
total=$((MIB + esp_bytes + data_bytes + bios_bytes + MIB))
esp_start=$((MIB / SECTOR))
esp_end=$((esp_start + esp_bytes / SECTOR - 1))
data_start=$((esp_end + 1))
data_end=$((data_start + data_bytes / SECTOR - 1))

img_tmp="$out.tmp"
rm -f "$img_tmp"
truncate -s "$total" "$img_tmp"
gpt_args=(
    --clear
    --disk-guid="$disk_guid"
    --new=1:"$esp_start":"$esp_end" --typecode=1:"$ESP_TYPE"
    --change-name=1:ESP --partition-guid=1:"$esp_guid"
    --new=2:"$data_start":"$data_end" --typecode=2:"$CAPMON_DATA_TYPE"
    --change-name=2:capmon-data --partition-guid=2:"$data_guid"
)
if [ "$bios" = 1 ]; then
    bios_start=$((data_end + 1))
    bios_end=$((bios_start + MIB / SECTOR - 1))
    gpt_args+=(
        --new=3:"$bios_start":"$bios_end" --typecode=3:"$BIOS_BOOT_TYPE"
        --change-name=3:bios-boot --partition-guid=3:"$bios_guid"
    )
fi
sgdisk "${gpt_args[@]}" "$img_tmp" >/dev/null

# --- 4. ESP into place ------------------------------------------------------
dd if="$esp_tmp" of="$img_tmp" bs=1M seek=$((esp_start * SECTOR / MIB)) \
    conv=notrunc,sparse status=none

# --- 5. optional BIOS boot: core.img into part 3, boot.img into the MBR -----
if [ "$bios" = 1 ]; then
    # core.img's embedded config finds the ESP and points $prefix at it;
    # normal mode then reads /boot/grub/grub.cfg there (the same menu as the
    # EFI image). Every module is built in, so no module directory is needed.
    cat >"$work/core.cfg" <<'EOF'
search --no-floppy --file --set=root /boot/capmon.elf
set prefix=($root)/boot/grub
EOF
    grub-mkimage -O i386-pc -d "$grub_pc_dir" -p /boot/grub \
        -c "$work/core.cfg" -o "$work/core.img" \
        biosdisk "${grub_modules[@]}"
    core_bytes=$(stat -c %s "$work/core.img")
    [ "$core_bytes" -le "$MIB" ] || die "core.img ($core_bytes bytes) does not fit the BIOS boot partition"
    dd if="$work/core.img" of="$img_tmp" bs=$SECTOR seek="$bios_start" \
        conv=notrunc status=none
    # boot.img: copy only its code (bytes 0..439) so the disk signature and
    # the protective MBR partition entry written by sgdisk stay intact.
    dd if="$grub_pc_dir/boot.img" of="$img_tmp" bs=440 count=1 \
        conv=notrunc status=none
    # What grub-install would patch (grub-core/boot/i386/pc/boot.S):
    # 0x5c GRUB_BOOT_MACHINE_KERNEL_SECTOR: LBA of core.img's first sector.
    put_le 8 "$bios_start" "$img_tmp" $((0x5c))
    # 0x66 GRUB_BOOT_MACHINE_DRIVE_CHECK: two NOPs, so DL from the BIOS is
    # trusted (grub-setup does this for hard disks).
    printf '\x90\x90' | dd of="$img_tmp" bs=1 seek=$((0x66)) conv=notrunc status=none
    # diskboot.S: the blocklist at the end of core.img's first sector (0x1f4)
    # starts with the u64 LBA of the rest of core.img; grub-mkimage already
    # filled in its length.
    put_le 8 $((bios_start + 1)) "$img_tmp" $((bios_start * SECTOR + 0x1f4))
fi

# --- 6. optional store in the data partition (part 2) -----------------------
# capmon-store finds the partition through the GPT written above, formats it
# (superblock, redb tables) and imports the tree in one transaction.
store_summary="zeroed"
if [ -n "$data_tree" ]; then
    "$store_tool" --part 2 "$img_tmp" mkfs >/dev/null ||
        die "capmon-store mkfs failed on partition 2"
    imported=$("$store_tool" --part 2 "$img_tmp" import "$data_tree") ||
        die "capmon-store import $data_tree failed"
    store_summary="store: ${imported#imported }"
fi

# sgdisk exits 0 even when it rebuilt a bad header in memory: read its words.
verify=$(sgdisk --verify "$img_tmp" 2>&1) || die "sgdisk --verify failed: $verify"
if ! grep -q "No problems found" <<<"$verify" \
    || grep -qiE "caution|warning|error|corrupt|invalid" <<<"$verify"; then
    die "sgdisk --verify complained: $verify"
fi
mv -f "$esp_tmp" "$esp_out"
mv -f "$img_tmp" "$out"
summary="ESP $((esp_bytes / MIB)) MiB @ LBA $esp_start, data $((data_bytes / MIB)) MiB @ LBA $data_start ($store_summary)"
[ "$bios" = 0 ] || summary+=", BIOS boot @ LBA $bios_start"
echo "mkimage: $out ($((total / MIB)) MiB; $summary; loader $loader)"
