#!/usr/bin/env bash
# Installs what building Weir needs on a fresh Debian/Ubuntu machine: clang and libclang
# (bindgen for RocksDB's -sys crate); with --test also the S3-compatible servers the tests
# start (s3s-fs and Garage, built once into ~/.cache/weir-tools; Garage takes about 15 minutes
# the first time). Does nothing for what is already there.
set -euo pipefail
TOOLS="$HOME/.cache/weir-tools"
if [ "${1:-}" = "--test" ]; then
  # s3s-fs for the main suite; Garage (a real object store) for the realistic end-to-end run.
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" s3s-fs@0.14.1 --features binary --locked
  fi
  if [ ! -x "$TOOLS/bin/garage" ]; then
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" garage@2.5.0 --locked
  fi
fi
if dpkg -s clang libclang-dev >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev >/dev/null
