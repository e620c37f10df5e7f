#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, starting from the
# committed seed corpus in fuzz/seeds/<target>/, and prints one summary line
# per target. Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly; cargo install cargo-fuzz`).
# A crash stops the run with the reproducer's path; turn it into a
# regression test in src/fuzzing/tests.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^emperor-fuzz$')
cargo +nightly fuzz build --release >/dev/null
printf '%-18s %12s %8s %8s %s\n' target executions cov ft result
for t in $targets; do
    corpus="corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    log="artifacts/$t/last.log"
    if cargo +nightly fuzz run --release "$t" "$corpus" "seeds/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log)"
    fi
    done_line=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true)
    execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$done_line")
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    printf '%-18s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
    [[ $result == ok ]] || exit 1
done
