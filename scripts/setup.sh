#!/usr/bin/env bash
# Installs what building Weir needs on a fresh Debian/Ubuntu machine: clang and libclang
# (bindgen for RocksDB's -sys crate; clang also compiles RocksDB's C++, see .cargo/config.toml).
# With --test also Lua 5.4, iproute2, the Helm SDK for Python (helm-python-sdk, which lints and
# renders the chart in its test), the S3-compatible server the tests start (s3s-fs, built once
# into ~/.cache/weir-tools/bin, about 1.5 minutes the first time) and the Kubernetes control
# plane of the cluster test (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl, built from the versions pinned in e2e/k8s/control-plane/go.mod with Go into
# ~/.cache/weir-tools/bin; about 5 minutes the first time, downloads included) and the Apache
# Kafka broker of the Kafka tests (its jars from Maven Central, e2e/kafka/pom.xml, into
# ~/.cache/weir-tools/kafka-<version>; about a minute the first time). With --garage
# also Garage, a second, independent S3 implementation for e2e/tests/garage.rs (about 9 minutes
# the first time; CI always builds it, the test skips itself, saying so, without it).
# Does nothing for what is already there.
set -euo pipefail
TEST=0
GARAGE=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    --garage) GARAGE=1 ;;
    *) echo "usage: scripts/setup.sh [--test] [--garage]" >&2; exit 2 ;;
  esac
done
TOOLS="$HOME/.cache/weir-tools"
if [ "$TEST" = 1 ]; then
  # s3s-fs for the main suite.
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" s3s-fs@0.14.1 --features binary --locked
  fi
  bash "$(dirname "$0")/../e2e/k8s/control-plane/build.sh" "$TOOLS"
fi
if [ "$GARAGE" = 1 ]; then
  # Garage, a real object store, for the realistic end-to-end run.
  if [ ! -x "$TOOLS/bin/garage" ]; then
    # Only what the test uses: the SQLite metadata engine and bundled C libraries (no LMDB, K2V
    # or OpenTelemetry metrics).
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" garage@2.5.0 --locked \
      --no-default-features --features bundled-libs,sqlite
  fi
fi
# Debian packages: clang and libclang for the build, make for librdkafka's bundled build; with
# --test also Lua, which runs the Argo CD health check in its test, iproute2, with which the
# node agent gives pods their networks, curl (the cluster test's pod of another workload), and
# (when missing) Java 17 and Maven for the Kafka broker of the Kafka tests.
PACKAGES="clang libclang-dev make"
[ "$TEST" = 1 ] && PACKAGES="$PACKAGES lua5.4 iproute2 curl"
if [ "$TEST" = 1 ] && ! command -v java >/dev/null 2>&1; then
  PACKAGES="$PACKAGES openjdk-17-jre-headless"
fi
if [ "$TEST" = 1 ] && ! command -v mvn >/dev/null 2>&1; then
  PACKAGES="$PACKAGES maven"
fi
if [ "$TEST" = 1 ] && ! python3 -m pip --version >/dev/null 2>&1; then
  PACKAGES="$PACKAGES python3 python3-pip"
fi
MISSING=""
for p in $PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || MISSING="$MISSING $p"
done
if [ -n "$MISSING" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
# The Helm SDK for Python (no helm binary needed); Debian's system Python needs the
# --break-system-packages flag for a user-level install.
if [ "$TEST" = 1 ] && ! python3 -c "import helm_python" >/dev/null 2>&1; then
  python3 -m pip install --quiet --user "helm-python-sdk==0.2.2" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "helm-python-sdk==0.2.2"
fi
# The Kafka broker the Kafka tests start (jars from Maven Central into ~/.cache/weir-tools).
if [ "$TEST" = 1 ]; then
  bash "$(dirname "$0")/../e2e/kafka/fetch.sh" "$TOOLS"
fi
