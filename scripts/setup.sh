#!/usr/bin/env bash
# Installs what building Weir needs on a fresh Debian/Ubuntu machine: clang and libclang
# (bindgen for RocksDB's -sys crate); with --test also Lua 5.4 and the S3-compatible servers the tests
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
# Debian packages: clang and libclang for the build; with --test also Lua, which runs the Argo CD
# health check in its test.
PACKAGES="clang libclang-dev"
[ "${1:-}" = "--test" ] && PACKAGES="$PACKAGES lua5.4"
MISSING=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || MISSING="$MISSING $p"
done
if [ -z "$MISSING" ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
