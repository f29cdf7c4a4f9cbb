# scripts/bench/linux.sh: sourced by the benchmarks that run a Linux guest beside capmon
# (bench-blk.sh, bench-smp.sh, bench-store.sh). Fetches Debian's cloud kernel and busybox-static
# into $LNX (build/bench-linux) with `apt-get download` + `dpkg-deb -x`, cached; `fetch_linux`
# prints the vmlinuz path, `stage_modules` copies the modules a guest needs into its initramfs;
# `after_warmup`, `median_best` and `compare_row` make the capmon-against-Linux table from the
# two transcripts. Needs `say` and `die` from the caller.
LNX=${LNX:-build/bench-linux}
mkdir -p "$LNX/debs"

download() {  # download PKG...: into $LNX/debs, updating the package lists once if needed
    (cd "$LNX/debs" && apt-get download "$@" >/dev/null 2>&1) && return 0
    say "apt-get download $* failed; running apt-get update once"
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed"
    (cd "$LNX/debs" && apt-get download "$@" >/dev/null) || die "apt-get download $* failed"
}

fetch_linux() {
    local vmlinuz
    vmlinuz=$(ls "$LNX"/root/boot/vmlinuz-*-cloud-amd64 2>/dev/null | head -n1 || true)
    if [ -n "$vmlinuz" ] && [ -x "$LNX/root/bin/busybox" ]; then
        echo "$vmlinuz"
        return
    fi
    say "fetching linux-image-cloud-amd64 and busybox-static into $LNX"
    download linux-image-cloud-amd64 busybox-static
    # The metapackage only depends on the versioned kernel package: fetch that too.
    local meta dep
    meta=$(ls "$LNX"/debs/linux-image-cloud-amd64_*.deb | head -n1)
    dep=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*-cloud-amd64\).*/\1/p' | head -n1)
    [ -n "$dep" ] || die "cannot find the kernel package $meta depends on"
    download "$dep"
    rm -rf "$LNX/root" && mkdir -p "$LNX/root"
    for d in "$LNX"/debs/"$dep"_*.deb "$LNX"/debs/busybox-static_*.deb; do
        dpkg-deb -x "$d" "$LNX/root"
    done
    vmlinuz=$(ls "$LNX"/root/boot/vmlinuz-*-cloud-amd64 | head -n1)
    [ -f "$vmlinuz" ] && [ -x "$LNX/root/bin/busybox" ] || die "kernel or busybox missing after extraction"
    echo "$vmlinuz"
}

# stage_modules VMLINUZ DIR MODULE...: the modules (file names, in load order) that VMLINUZ's
# kernel does not build in, copied (decompressed) into DIR as NAME.ko; prints their names, each
# after a space, in order, for the init's `for m in$load; do insmod ...`.
stage_modules() {
    local kver=${1##*/vmlinuz-} dir=$2 moddir m ko
    moddir=$LNX/root/lib/modules/$kver
    shift 2
    for m in "$@"; do
        if grep -q "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then
            continue
        fi
        ko=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
        [ -n "$ko" ] || die "$m is neither built into $kver nor a module"
        case $ko in *.xz) xz -dc "$ko" >"$dir/$m.ko" ;;
                    *.zst) zstd -qdc "$ko" >"$dir/$m.ko" ;;
                    *) cp "$ko" "$dir/$m.ko" ;; esac
        printf ' %s' "$m"
    done
}

# after_warmup LOG: the transcript's lines outside its warm-up round (the guests mark their
# rounds `BENCH-ROUND warmup|N`).
after_warmup() {
    tr '\r' '\n' <"$1" | awk '/^BENCH-ROUND / { warm = ($2 == "warmup"); next } !warm'
}

# median_best: "VALUE MEAN-US" lines in (one a run), "median-VALUE its-MEAN-US best-VALUE runs"
# out (the lower median of an even count); nothing for no lines.
median_best() {
    sort -g -k1,1 \
        | awk '{ v[NR] = $1; u[NR] = $2 } END { m = int((NR + 1) / 2); if (NR) print v[m], u[m], v[NR], NR }'
}

# compare_row LABEL GOAL UNIT WIDTH NOTE CAPMON LINUX: one table entry from the median_best lines
# of both guests: LABEL, the medians in UNIT (columns WIDTH wide), their ratio, GOAL (a ratio
# like 1.5x, or -) and whether the ratio meets it; below, the mean-us pair (NOTE says what it
# is) and the best runs. Prints NOT MEASURED and returns 1 if either line is empty.
compare_row() {
    local label=$1 goal=$2 unit=$3 width=$4 note=$5 c=$6 l=$7
    if [ -z "$c" ] || [ -z "$l" ]; then
        printf "%-24s %${width}s %${width}s %7s %5s %s\n" "$label" "${c%% *}" "${l%% *}" - "$goal" \
            "NOT MEASURED"
        return 1
    fi
    awk -v label="$label" -v c="$c" -v l="$l" -v goal="$goal" -v note="$note" \
        -v v="%$((width - 1 - ${#unit})).1f $unit" -v us="%$((width - 3))d us" 'BEGIN {
        split(c, C, " "); split(l, L, " ")
        r = (L[1] > 0) ? C[1] / L[1] : 0
        g = goal; sub(/x$/, "", g)
        met = (goal == "-") ? "-" : ((r >= g) ? "yes" : "no")
        printf "%-24s " v " " v " %6.2fx %5s %s\n", label, C[1], L[1], r, goal, met
        printf "%-24s " us " " us "   (%s)\n", "", C[2], L[2], note
        printf "%-24s " v " " v " %6.2fx   (best; median and best of %d / %d runs)\n", "",
               C[3], L[3], (L[3] > 0) ? C[3] / L[3] : 0, C[4], L[4]
    }'
}
