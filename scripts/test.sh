#!/usr/bin/env bash
# scripts/test.sh: what `make test` (and so CI) runs. Setup, formatting, clippy (host crates
# and the kernel), host unit tests, the ISO and disk image, then every expect proof under
# SeaBIOS and OVMF (expect/run-all.sh). Every step runs even after a failure, so one run shows
# everything that is wrong. Needs no stdin and no TTY.
#
# Last line: "N passed, N failed, N skipped": each build/lint step is one check, each host
# test counts (cargo's passed/failed/ignored totals), each proof run counts (proof x firmware).
# Step logs: build/test-logs/. Exit status 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export CARGO_TERM_COLOR=never
logs=build/test-logs
mkdir -p "$logs"

passed=0 failed=0 skipped=0
failures=()

# step NAME CMD...: runs CMD with its output in build/test-logs/NAME.log; one check.
step() {
    local name=$1 t0=$SECONDS rc
    shift
    "$@" </dev/null >"$logs/$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "ok   $name ($((SECONDS - t0)) s)"
        passed=$((passed + 1))
    else
        echo "FAIL $name (exit $rc, $((SECONDS - t0)) s): last lines of $logs/$name.log:"
        tail -n 40 "$logs/$name.log" | sed 's/^/    /'
        failed=$((failed + 1))
        failures+=("$name")
    fi
    return "$rc"
}

step setup scripts/setup.sh || { echo "$passed passed, $failed failed, $skipped skipped"; exit 1; }
step fmt cargo fmt --all -- --check
# The kernel and the user programs build only for x86_64-unknown-none.
step clippy-host cargo clippy --workspace --exclude capmon-kernel --exclude capmon-user --all-targets -- -D warnings
step clippy-kernel cargo clippy -p capmon-kernel -p capmon-user --target x86_64-unknown-none --release -- -D warnings

# Host tests: cargo's own totals are folded into ours.
t0=$SECONDS
cargo test --workspace --exclude capmon-kernel --exclude capmon-user </dev/null >"$logs/host-tests.log" 2>&1
rc=$?
read -r tp tf ti < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i-1)
            if ($(i) ~ /^failed;?$/) f += $(i-1)
            if ($(i) ~ /^ignored;?$/) g += $(i-1)
        }
    } END { print p + 0, f + 0, g + 0 }' "$logs/host-tests.log")
echo "$([ "$rc" -eq 0 ] && echo "ok  " || echo FAIL) host tests: $tp passed, $tf failed, $ti ignored ($((SECONDS - t0)) s)"
passed=$((passed + tp)); failed=$((failed + tf)); skipped=$((skipped + ti))
if [ "$rc" -ne 0 ]; then
    grep -E '^(error(\[E[0-9]+\])?:|test .* FAILED|---- .* stdout ----|failures:)' "$logs/host-tests.log" |
        head -n 40 | sed 's/^/    /'
    if [ "$tf" -eq 0 ]; then
        # It failed without a failing test: a build error, or a test binary that crashed.
        echo "FAIL host tests: cargo test exited $rc (see $logs/host-tests.log)"
        failed=$((failed + 1))
    fi
    failures+=("host-tests")
fi

# Boot media, then the proofs on them.
if step iso make --no-print-directory iso; then
    if make -n image >/dev/null 2>&1; then
        step image make --no-print-directory image image-gcp
    fi
    if [ -n "${LIMINE_DIR:-}" ]; then
        step iso-limine make --no-print-directory iso-limine
    fi
    t0=$SECONDS
    expect/run-all.sh </dev/null 2>&1 | tee "$logs/proofs.log" | grep -E '^(==== |FAIL |SKIP |proof [^ ]+:|failed:)'
    summary=$(tail -n 1 "$logs/proofs.log")
    if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
        echo "proofs: $summary ($((SECONDS - t0)) s; full output in $logs/proofs.log)"
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        skipped=$((skipped + BASH_REMATCH[3]))
        [ "${BASH_REMATCH[2]}" -gt 0 ] && failures+=("proofs")
    else
        echo "FAIL proofs: expect/run-all.sh ended without a summary: $summary"
        failed=$((failed + 1))
        failures+=("proofs")
    fi
else
    echo "SKIP proofs: no ISO"
    skipped=$((skipped + 1))
fi

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
