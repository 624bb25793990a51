#!/usr/bin/env bash
# Checks that the README's two commands share one build: everything the first command compiles
# (`cargo run --release -p weir-runtime`) is reused, unchanged, by the second (`cargo test
# --release --workspace`). Builds both (the second with --no-run), then compares the artifacts
# Cargo reports (scripts/one_build.py). Exit 1, naming each dependency built twice and the
# features of both builds, when a workspace member asks for features the runtime's build does
# not have: add them to runtime/feature-pins/Cargo.toml. CI runs this before the tests, whose
# build it leaves ready.
set -euo pipefail
cd "$(dirname "$0")/.."
first="$(mktemp)"
second="$(mktemp)"
trap 'rm -f "$first" "$second"' EXIT
cargo build --release -p weir-runtime --bin weir --message-format=json-render-diagnostics > "$first"
cargo test --release --workspace --no-run --message-format=json-render-diagnostics > "$second"
python3 scripts/one_build.py "$first" "$second"
