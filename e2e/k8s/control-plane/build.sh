#!/usr/bin/env bash
# Builds the control plane the end-to-end tests start (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) from the versions pinned in go.mod into
# $1/bin (default ~/.cache/weir-tools/bin). Skips binaries already built from this go.mod: a stamp
# file records the go.sum hash they came from. Cold: about 5 minutes on 2 cores, downloads included.
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="${1:-$HOME/.cache/weir-tools}"
STAMP="$TOOLS/bin/.control-plane-$(sha256sum go.sum | cut -c1-16)"
[ -f "$STAMP" ] && exit 0
mkdir -p "$TOOLS/bin"
# The Go caches live under ~/.cache too, so a rebuild after a version bump reuses them.
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/go-mod}"
export GOCACHE="${GOCACHE:-$HOME/.cache/go-build}"
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0
go build -trimpath -ldflags "-s -w" -o "$TOOLS/bin/" \
  go.etcd.io/etcd/server/v3 \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl
# go build names etcd's binary after its module path without the major version ("server").
mv "$TOOLS/bin/server" "$TOOLS/bin/etcd"
touch "$STAMP"
