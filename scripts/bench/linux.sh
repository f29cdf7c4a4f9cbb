# scripts/bench/linux.sh: sourced by the benchmarks that run a Linux guest beside capmon
# (bench-blk.sh, bench-smp.sh). Fetches Debian's cloud kernel and busybox-static into $LNX
# (build/bench-linux) with `apt-get download` + `dpkg-deb -x`, cached; `fetch_linux` prints the
# vmlinuz path. Needs `say` and `die` from the caller.
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
