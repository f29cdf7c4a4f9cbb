#!/usr/bin/env bash
# check-image.sh: host-side oracle for build/capmon.img (and the GCP archive).
# Prints one "PASS name" or "FAIL name: expected X, got Y" line per check and
# exits non-zero when any check failed. Uses only tools that read the image
# file itself (sgdisk, mtools, od, tar, and capmon-store's read-only commands
# for the store in the data partition), never the kernel.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

readonly CAPMON_DATA_TYPE="C0A9D47A-3F1E-4B8B-9A43-6361706D6F6E"
readonly ESP_TYPE="C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
readonly BIOS_BOOT_TYPE="21686148-6449-6E6F-744E-656564454649"
readonly SECTOR=512

image="build/capmon.img"
esp=""
kernel=""
data_size=""
gcp=""
store_tool="$repo/target/release/capmon-store"
data_tree="$repo/scripts/sample-tree"
fails=0
passes=0

usage() {
    echo "usage: $0 [--image IMG] [--esp ESP.img] [--kernel ELF] [--data-size SIZE] [--gcp TAR.GZ]" >&2
    echo "       [--data-tree DIR] [--store-tool BIN]" >&2
    echo "  --data-tree DIR   the tree the data partition's store must hold (default" >&2
    echo "                    scripts/sample-tree); '' expects a zeroed partition" >&2
    echo "  --store-tool BIN  capmon-store (default target/release/capmon-store)" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="${2:?}"; shift 2 ;;
        --esp) esp="${2:?}"; shift 2 ;;
        --kernel) kernel="${2:?}"; shift 2 ;;
        --data-size) data_size="${2:?}"; shift 2 ;;
        --gcp) gcp="${2:?}"; shift 2 ;;
        --data-tree) data_tree="$2"; shift 2 ;;
        --store-tool) store_tool="${2:?}"; shift 2 ;;
        *) usage ;;
    esac
done

pass() { echo "PASS $1"; passes=$((passes + 1)); }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }
# check NAME EXPECTED GOT
check() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected $2, got $3"; fi
}
# byte_hex FILE OFFSET COUNT: hex string of COUNT bytes at OFFSET.
byte_hex() { od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }
# le_u64 FILE OFFSET: little-endian u64 at OFFSET, as decimal.
le_u64() {
    local h
    h=$(od -An -tx1 -j "$2" -N 8 "$1" | tr -s ' ' '\n' | grep . | tac | tr -d '\n')
    echo $((16#${h:-0}))
}
# part_field IMG N FIELD: a line of `sgdisk -i N` ("First sector", ...).
part_field() {
    sgdisk -i "$2" "$1" 2>/dev/null | sed -n "s/^$3: *//p" | awk '{print $1}'
}
to_bytes() { numfmt --from=iec "$1" 2>/dev/null; }

# check_gpt NAME IMG: sgdisk -v, protective MBR, both GPT header signatures.
check_gpt() {
    local name="$1" img="$2" out size last
    out=$(sgdisk -v "$img" 2>&1)
    # sgdisk exits 0 and says "No problems found" even when it silently
    # rebuilt a corrupt backup header in memory; its warnings say so.
    if grep -q "No problems found" <<<"$out" \
        && ! grep -qiE "caution|warning|error|corrupt|invalid" <<<"$out"; then
        pass "$name-sgdisk-verify"
    else
        fail "$name-sgdisk-verify" "expected 'No problems found' and no warnings, got: $(tr '\n' ' ' <<<"$out" | head -c 300)"
    fi
    check "$name-pmbr-type" "ee" "$(byte_hex "$img" $((0x1be + 4)) 1)"
    check "$name-mbr-signature" "55aa" "$(byte_hex "$img" 510 2)"
    check "$name-gpt-primary" "4546492050415254" "$(byte_hex "$img" $SECTOR 8)"
    size=$(stat -c %s "$img")
    last=$((size / SECTOR - 1))
    check "$name-gpt-backup" "4546492050415254" "$(byte_hex "$img" $((last * SECTOR)) 8)"
}

[ -f "$image" ] || { fail image-exists "no file $image"; echo "0 passed, 1 failed"; exit 1; }

# --- partition table --------------------------------------------------------
check_gpt image "$image"

check esp-type "$ESP_TYPE" "$(part_field "$image" 1 'Partition GUID code')"
check data-type "$CAPMON_DATA_TYPE" "$(part_field "$image" 2 'Partition GUID code')"
esp_first=$(part_field "$image" 1 'First sector')
esp_last=$(part_field "$image" 1 'Last sector')
if [ -n "$data_size" ]; then
    data_first=$(part_field "$image" 2 'First sector')
    data_last=$(part_field "$image" 2 'Last sector')
    if [ -n "$data_first" ] && [ -n "$data_last" ]; then
        check data-size "$(to_bytes "$data_size")" $(((data_last - data_first + 1) * SECTOR))
    else
        fail data-size "expected partition 2, got none"
    fi
fi

# --- the store in the data partition ----------------------------------------
# capmon-store opens the image file read-only for these commands.
data_n=""
for n in 1 2 3 4; do
    if [ "$(part_field "$image" $n 'Partition GUID code')" = "$CAPMON_DATA_TYPE" ]; then
        data_n=$n
        break
    fi
done
if [ -z "$data_n" ]; then
    fail data-present "expected a capmon data partition, got none"
elif [ -z "$data_tree" ]; then
    first=$(part_field "$image" "$data_n" 'First sector')
    check data-zeroed 0 "$(od -An -tx1 -v -j $((first * SECTOR)) -N 4096 "$image" | tr -d ' 0\n' | wc -c)"
elif [ ! -x "$store_tool" ]; then
    fail store-tool "expected an executable $store_tool (make store-tool), got none"
else
    store() { "$store_tool" --part "$data_n" "$image" "$@" 2>&1; }
    out=$(store fsck)
    rc=$?
    if [ "$rc" -eq 0 ] && [ "$(tail -n 1 <<<"$out")" = "fsck: clean" ]; then
        pass store-fsck
    else
        fail store-fsck "expected exit 0 and 'fsck: clean', got exit $rc: $(tr '\n' ' ' <<<"$out" | head -c 300)"
    fi
    # `ls /` lists the tree's top level: names in byte order, directories with a '/'.
    want=$(cd "$data_tree" && LC_ALL=C find . -mindepth 1 -maxdepth 1 \( -type d -printf '%f/\n' -o -printf '%f\n' \) | LC_ALL=C sort | tr '\n' ' ')
    got=$(store ls / | sed -n 's/^[df] *[0-9]*  //p' | tr '\n' ' ')
    check store-ls-root "$want" "$got"
    # Every file of the tree, by SHA-256 and size.
    while IFS= read -r -d '' f; do
        rel=${f#./}
        hash=$(cd "$data_tree" && sha256sum "$rel" | awk '{print $1}')
        size=$(cd "$data_tree" && stat -c %s "$rel")
        check "store-sum-$rel" "sha256 $hash  $size bytes" "$(store sum "/$rel")"
    done < <(cd "$data_tree" && find . -type f -print0 | LC_ALL=C sort -z)
fi

# --- ESP contents -----------------------------------------------------------
if [ -z "$esp_first" ]; then
    fail esp-present "expected partition 1, got none"
else
    off=$((esp_first * SECTOR))
    esp_bytes=$(((esp_last - esp_first + 1) * SECTOR))
    # FAT32 boot sector: BS_FilSysType "FAT32   " at offset 82.
    check esp-fat32 "4641543332202020" "$(byte_hex "$image" $((off + 82)) 8)"
    listing=$(mdir -b -i "$image@@$off" ::/EFI/BOOT 2>&1)
    if grep -qi '^::/EFI/BOOT/BOOTX64.EFI$' <<<"$listing"; then
        pass esp-bootx64
    else
        fail esp-bootx64 "expected ::/EFI/BOOT/BOOTX64.EFI, got: $(tr '\n' ' ' <<<"$listing")"
    fi
    # The file must be a PE32+ image for x86-64 (machine 0x8664).
    pe=$(mtype -i "$image@@$off" ::/EFI/BOOT/BOOTX64.EFI 2>/dev/null | head -c 4096 | od -An -tx1 -N 2 | tr -d ' \n')
    check esp-bootx64-mz "4d5a" "$pe"
    if [ -n "$kernel" ]; then
        if mtype -i "$image@@$off" ::/boot/capmon.elf 2>/dev/null | cmp -s - "$kernel"; then
            pass esp-kernel
        else
            fail esp-kernel "expected ::/boot/capmon.elf identical to $kernel, got a different or missing file"
        fi
    fi
    if [ -n "$esp" ]; then
        esp_size=$(stat -c %s "$esp" 2>/dev/null || echo 0)
        check esp-file-size "$esp_bytes" "$esp_size"
        if cmp -s -n "$esp_bytes" "$esp" <(tail -c +$((off + 1)) "$image"); then
            pass esp-in-place
        else
            fail esp-in-place "expected $esp at byte $off of $image, got different bytes"
        fi
    fi
fi

# --- BIOS boot (only when the disk has a BIOS boot partition) ---------------
bios_part=""
for n in 3 4; do
    if [ "$(part_field "$image" $n 'Partition GUID code')" = "$BIOS_BOOT_TYPE" ]; then
        bios_part=$n
    fi
done
if [ -n "$bios_part" ]; then
    bios_first=$(part_field "$image" "$bios_part" 'First sector')
    # boot.img's GRUB_BOOT_MACHINE_KERNEL_SECTOR (0x5c) must name core.img.
    check bios-kernel-sector "$bios_first" "$(le_u64 "$image" $((0x5c)))"
    # diskboot.img blocklist (0x1f4 in core.img's first sector): the rest.
    check bios-blocklist "$((bios_first + 1))" "$(le_u64 "$image" $((bios_first * SECTOR + 0x1f4)))"
fi

# --- GCP archive ------------------------------------------------------------
if [ -n "$gcp" ]; then
    members=$(tar -tzf "$gcp" 2>&1 | tr '\n' ' ')
    check gcp-members "disk.raw " "$members"
    # GNU oldgnu header: magic "ustar  \0" at offset 257 of the tar stream.
    magic=$(gzip -dc "$gcp" 2>/dev/null | head -c 265 | od -An -tx1 -j 257 -N 8 | tr -d ' \n')
    check gcp-oldgnu "7573746172202000" "$magic"
    gcp_tmp=$(mktemp -d "${TMPDIR:-/tmp}/capmon-check.XXXXXX")
    if tar -xSzf "$gcp" -C "$gcp_tmp" disk.raw 2>/dev/null; then
        raw_size=$(stat -c %s "$gcp_tmp/disk.raw")
        check gcp-size-whole-gib 0 $((raw_size % (1024 * 1024 * 1024)))
        check_gpt gcp "$gcp_tmp/disk.raw"
        # The GPT headers differ (backup moved to the new end); the ESP not.
        if [ -n "$esp_first" ] && cmp -s \
            <(tail -c +$((off + 1)) "$image" | head -c "$esp_bytes") \
            <(tail -c +$((off + 1)) "$gcp_tmp/disk.raw" | head -c "$esp_bytes"); then
            pass gcp-esp-same
        else
            fail gcp-esp-same "expected the ESP bytes of $image in disk.raw, got different bytes"
        fi
    else
        fail gcp-extract "expected disk.raw to extract from $gcp"
    fi
    rm -rf "$gcp_tmp"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
