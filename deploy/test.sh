#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then checks format,
# lints, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets --no-fail-fast --features emperor/failpoints
