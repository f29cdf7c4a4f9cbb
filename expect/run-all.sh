#!/usr/bin/env bash
# run-all.sh [PROOF...]: runs every expect/*.exp proof (or the ones named, e.g. `boot mem`)
# under SeaBIOS and OVMF on build/capmon.iso, and on build/capmon-limine.iso when LIMINE_DIR
# is set. Two proofs run at a time (PROOF_JOBS). A proof may narrow where it runs with
# header comments:   # firmware: uefi        # loaders: grub
# Each proof's output is printed as it finishes; its transcript is in build/transcripts/.
# The last line is "N passed, N failed, N skipped", counting proofs x firmware x loader; a
# proof that cannot run here (proof_skip: exit 77) counts as skipped.
# Exit status 1 if any failed.
#
# Environment: PROOF_JOBS (default 2), PROOF_TIMEOUT (seconds per proof, default 900),
# FIRMWARES (default "bios uefi"), LIMINE_DIR.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

jobs_max=${PROOF_JOBS:-2}
proof_timeout=${PROOF_TIMEOUT:-900}
firmwares=${FIRMWARES:-bios uefi}
# Per-run scratch: two run-all.sh in one tree (two engineers) must not share it.
results=build/proof-results/run-$$
mkdir -p "$results" build/transcripts

passed=0 failed=0 skipped=0
failed_names=()

if [ $# -gt 0 ]; then
    proofs=()
    for p in "$@"; do proofs+=("expect/${p%.exp}.exp"); done
else
    proofs=(expect/*.exp)
fi

# header VALUE_NAME FILE DEFAULT: the words after "# VALUE_NAME:" in FILE's comment header.
header() {
    local v
    v=$(sed -n "s/^# *$1: *//p" "$2" | head -n 1)
    echo "${v:-$3}"
}

# The runs: "proof firmware loader iso".
runs=()
limine_iso=build/capmon-limine.iso
if [ -n "${LIMINE_DIR:-}" ] && [ ! -f "$limine_iso" ]; then
    echo "building $limine_iso (LIMINE_DIR=$LIMINE_DIR)"
    make --no-print-directory iso-limine >"$results/iso-limine.log" 2>&1 ||
        { echo "FAIL make iso-limine:"; tail -n 20 "$results/iso-limine.log"; }
fi
for f in "${proofs[@]}"; do
    if [ ! -f "$f" ]; then
        echo "FAIL $f: no such proof"
        failed=$((failed + 1)); failed_names+=("$f")
        continue
    fi
    name=$(basename "$f" .exp)
    fws=$(header firmware "$f" "bios uefi")
    loaders=$(header loaders "$f" "grub limine")
    for fw in $firmwares; do
        [[ " $fws " == *" $fw "* ]] || continue
        runs+=("$name $fw grub build/capmon.iso")
        if [[ " $loaders " == *" limine "* ]]; then
            if [ -n "${LIMINE_DIR:-}" ]; then
                runs+=("$name $fw limine $limine_iso")
            else
                limine_skips=$(( ${limine_skips:-0} + 1 ))
            fi
        fi
    done
done
if [ "${limine_skips:-0}" -gt 0 ]; then
    echo "SKIP limine: LIMINE_DIR not set ($limine_skips proof runs on build/capmon-limine.iso skipped)"
    skipped=$((skipped + limine_skips))
fi

pids=()
tags=()
cleanup() {
    # Each run is a subshell running `timeout ... expect`: TERM its child, the timeout, which
    # passes it on to expect, whose handler kills QEMU.
    for p in "${pids[@]}"; do
        [ -n "$p" ] && { pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; }
    done
    rm -rf "$results"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints a finished run's output and counts it.
collect() {
    local tag=$1 out="$results/$1.out" rc
    rc=$(cat "$out.rc")
    echo "==== $tag ($(cat "$out.secs") s)"
    cat "$out"
    # Skipped: exit 77 (proof_skip), or exit 0 with a SKIP line and no proof summary.
    if [ "$rc" -eq 77 ] || { [ "$rc" -eq 0 ] && grep -q '^SKIP ' "$out" &&
                             ! grep -q '^proof [^ ]*: [0-9]* checks passed' "$out"; }; then
        skipped=$((skipped + 1))
    elif [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
    else
        [ "$rc" -eq 124 ] && echo "FAIL $tag: timed out after $proof_timeout s"
        failed=$((failed + 1)); failed_names+=("$tag")
    fi
}

# Waits until fewer than $1 runs are going, collecting those that finished.
drain() {
    while :; do
        local i n=0
        for i in "${!pids[@]}"; do
            [ -z "${pids[$i]}" ] && continue
            if [ -f "$results/${tags[$i]}.out.rc" ]; then
                wait "${pids[$i]}" 2>/dev/null
                collect "${tags[$i]}"
                pids[i]=""
            else
                n=$((n + 1))
            fi
        done
        [ "$n" -lt "$1" ] && return
        sleep 0.3
    done
}

for r in "${runs[@]}"; do
    read -r name fw loader iso <<<"$r"
    tag="$name-$([ "$loader" = grub ] || echo "$loader-")$fw"
    drain "$jobs_max"
    out="$results/$tag.out"
    (
        start=$(date +%s)
        CAPMON_FIRMWARE=$fw CAPMON_LOADER=$loader CAPMON_ISO=$iso \
            timeout -k 10 "$proof_timeout" expect "expect/$name.exp" </dev/null >"$out" 2>&1
        rc=$?
        echo $(( $(date +%s) - start )) >"$out.secs"
        echo "$rc" >"$out.rc"
    ) &
    pids+=($!)
    tags+=("$tag")
done
drain 1

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
