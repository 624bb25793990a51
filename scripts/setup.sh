#!/usr/bin/env bash
# Installs what building Weir needs on a fresh Debian/Ubuntu machine: clang and libclang
# (bindgen for RocksDB's -sys crate); with --test also Lua 5.4, iproute2, the Helm SDK for Python
# (helm-python-sdk, which lints and renders the chart in its test), the S3-compatible servers
# the tests start (s3s-fs and Garage, built once into ~/.cache/weir-tools; Garage takes about 7
# minutes the first time) and the Kubernetes control plane of the cluster test (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl, built from the versions
# pinned in e2e/k8s/control-plane/go.mod with Go into ~/.cache/weir-tools/bin; about 4 minutes
# the first time). Does nothing for what is already there.
set -euo pipefail
TOOLS="$HOME/.cache/weir-tools"
if [ "${1:-}" = "--test" ]; then
  # s3s-fs for the main suite; Garage (a real object store) for the realistic end-to-end run.
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" s3s-fs@0.14.1 --features binary --locked
  fi
  if [ ! -x "$TOOLS/bin/garage" ]; then
    # Only what the test uses (the SQLite metadata engine, bundled C libraries): no LMDB, K2V or
    # OpenTelemetry metrics, which cut its build time.
    CARGO_TARGET_DIR="$TOOLS/target" cargo install --root "$TOOLS" garage@2.5.0 --locked \
      --no-default-features --features bundled-libs,sqlite
  fi
  bash "$(dirname "$0")/../e2e/k8s/control-plane/build.sh" "$TOOLS"
fi
# Debian packages: clang and libclang for the build; with --test also Lua, which runs the Argo CD
# health check in its test, and iproute2, with which the node agent gives pods their networks.
PACKAGES="clang libclang-dev"
[ "${1:-}" = "--test" ] && PACKAGES="$PACKAGES lua5.4 iproute2"
if [ "${1:-}" = "--test" ] && ! python3 -m pip --version >/dev/null 2>&1; then
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
if [ "${1:-}" = "--test" ] && ! python3 -c "import helm_python" >/dev/null 2>&1; then
  python3 -m pip install --quiet --user "helm-python-sdk==0.2.2" 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages "helm-python-sdk==0.2.2"
fi
