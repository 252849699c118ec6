#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 30), one after another, in one process each.
# Usage: fuzz/run-all.sh [SECONDS]    (from anywhere; stable toolchain is fine)
# Env: SANITIZER=address|none (default address), FUZZ_ARGS="extra libFuzzer flags".
# Exits non-zero if any target found a crash; its reproducer is in fuzz/artifacts/<target>/.
set -uo pipefail

seconds="${1:-30}"
sanitizer="${SANITIZER:-address}"
cd "$(dirname "$0")"

# cargo-fuzz wants nightly; RUSTC_BOOTSTRAP=1 lets the stable compiler accept its -Z flags.
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

cargo fuzz build -s "$sanitizer" || exit 2

failed=()
for target in $(cargo fuzz list); do
    echo "=== $target: ${seconds}s"
    log="target/fuzz-$target.log"
    # Reproducers committed under regressions/ are replayed first, then the corpus grows.
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "regressions/$target" ] && seeds+=("regressions/$target")
    # The embedded defaults are a good starting point for the config loader.
    [ "$target" = config ] && seeds+=("../config")
    [ "$target" = user_file ] && seeds+=("../examples/users")
    if cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^#[0-9]+.*DONE' "$log" \
            | tr '\n' ' '
        echo
    else
        echo "!!! $target FAILED; see fuzz/$log and fuzz/artifacts/$target/"
        grep -m1 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all targets ran ${seconds}s without a crash"
