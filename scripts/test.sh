#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing, then runs formatting and
# lint checks and every test of the default workspace members.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh --quick    # tests only (no fmt/clippy)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

say() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs); this project builds with stable Rust >= 1.85" >&2
    exit 1
fi

if [[ $quick == 0 ]]; then
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy (all workspace crates, all targets, warnings are errors)"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

say "cargo test"
cargo test --locked

say "interop: official Python and JS clients against our router"
cargo build -p clasp-cli --locked
./scripts/interop.sh target/debug/clasp
