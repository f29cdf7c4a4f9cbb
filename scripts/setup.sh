#!/usr/bin/env bash
# Installs everything capmon's build, proofs and benchmarks need. Idempotent: a second run on a
# ready machine checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(qemu-system-x86 qemu-utils ovmf grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools
      dosfstools gdisk expect tcl capnproto gdb python3 binutils)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
