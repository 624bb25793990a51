#!/usr/bin/env bash
# Installs what building Weir needs on a fresh Debian/Ubuntu machine: clang and libclang
# (bindgen for RocksDB's -sys crate). Does nothing when they are already there.
set -euo pipefail
if dpkg -s clang libclang-dev >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev >/dev/null
