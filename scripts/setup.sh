#!/usr/bin/env bash
# Installs everything capmon's build, proofs and benchmarks need. Idempotent: a second run on a
# ready machine checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools
      dosfstools gdisk e2fsprogs expect tcl capnproto gdb python3 binutils)

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# The proofs run on QEMU 10 (its TCG has x2APIC and takes -smp 300; 7.2's has neither). Debian 13
# ships it; on Debian 12 it comes from bookworm-backports, with the SeaBIOS and firmware it needs.
BACKPORTS=()
if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
    BACKPORTS=(qemu-system-x86 qemu-utils qemu-system-data qemu-system-common seabios ipxe-qemu)
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: adding bookworm-backports (QEMU 10)"
        mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(http[^ ]*debian\)\/* bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)
        [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
        $SUDO apt-get update -qq
    fi
fi
qemu_major() { qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p'; }
if [ ${#BACKPORTS[@]} -gt 0 ] && [ "$(qemu_major)" != "" ] && [ "$(qemu_major)" -lt 10 ]; then
    echo "setup: upgrading QEMU $(qemu_major) to 10 from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports "${BACKPORTS[@]}" >/dev/null
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    bp=(); rest=()
    for p in "${missing[@]}"; do
        if printf '%s\n' "${BACKPORTS[@]}" | grep -qx "$p"; then bp+=("$p"); else rest+=("$p"); fi
    done
    if [ ${#bp[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports "${BACKPORTS[@]}" >/dev/null
    fi
    if [ ${#rest[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
    fi
fi
if [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 10 ]; then
    echo "setup: QEMU 10 or newer is required for the proofs; found: $(qemu-system-x86_64 --version 2>/dev/null | head -1)" >&2
    exit 1
fi

# The pinned nightly (rust-toolchain.toml) with its components and the kernel target.
if ! command -v rustup >/dev/null; then
    echo "setup: rustup is required (the Rust toolchain installer); install it and re-run" >&2
    exit 1
fi
chan=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup run "$chan" rustc --print target-libdir --target x86_64-unknown-none >/dev/null 2>&1 \
   || [ ! -d "$(rustup run "$chan" rustc --print sysroot)/lib/rustlib/x86_64-unknown-none" ] \
   || ! rustup component list --toolchain "$chan" --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "setup: installing Rust $chan"
    rustup toolchain install "$chan" --profile minimal -c rust-src -c rustfmt -c clippy -t x86_64-unknown-none
fi
touch build/.setup-done 2>/dev/null || { mkdir -p build && touch build/.setup-done; }
