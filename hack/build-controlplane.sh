#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from their Go modules with the machine's Go toolchain,
# into a cache outside the repository keyed by version. What is cached is never rebuilt.
#
# Prints the directory holding the binaries on its last line of stdout; progress goes to stderr.
# Cache root: $ENCLAVE_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=controlplane
# shellcheck source=lib.sh
source "$here/lib.sh"

bin_dir="$cache_root/controlplane/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"

have_all() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [ -x "$bin_dir/$b" ] || return 1
  done
}

if have_all; then
  log "cached in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

need_go
mkdir -p "$bin_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Kubernetes: k8s.io/kubernetes pins its staging modules at v0.0.0 with local replaces, so a
# wrapper module requires it and points each staging module at its published v0.X.Y.
if ! [ -x "$bin_dir/kube-apiserver" ] || ! [ -x "$bin_dir/kube-controller-manager" ] \
  || ! [ -x "$bin_dir/kube-scheduler" ] || ! [ -x "$bin_dir/kubectl" ]; then
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$work/k8s"
  log "kubernetes $KUBERNETES_VERSION: resolving modules"
  gomod=$(cd "$work/k8s" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module enclave.dev/controlplane/kubernetes"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    grep -oE '^[[:space:]]k8s\.io/[a-z-]+ v0\.0\.0$' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/k8s/go.mod"
  cat > "$work/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$work/k8s" && go mod tidy -e >/dev/null 2>&1) || true
  go_build "kubernetes $KUBERNETES_VERSION" "$work/k8s" -ldflags='-s -w' -o "$work/out/" -- \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  mv "$work/out/"* "$bin_dir/"
fi

# etcd: its server module carries local replaces, so it too builds from a wrapper module.
if ! [ -x "$bin_dir/etcd" ]; then
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<GOMOD
module enclave.dev/controlplane/etcd
go 1.26.0
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat > "$work/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$work/etcd" && go mod tidy -e >/dev/null 2>&1) || true
  go_build "etcd $ETCD_VERSION" "$work/etcd" -ldflags='-s -w' -o "$work/etcd-out/" -- go.etcd.io/etcd/server/v3
  mv "$work/etcd-out/v3" "$bin_dir/etcd" 2>/dev/null || mv "$work/etcd-out/server" "$bin_dir/etcd" 2>/dev/null \
    || mv "$work/etcd-out/"* "$bin_dir/etcd"
fi

if ! [ -x "$bin_dir/kwok" ]; then
  mkdir -p "$work/kwok"
  cat > "$work/kwok/go.mod" <<GOMOD
module enclave.dev/controlplane/kwok
go 1.26.0
require sigs.k8s.io/kwok $KWOK_VERSION
GOMOD
  cat > "$work/kwok/tools.go" <<'GO'
//go:build tools

package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
GO
  (cd "$work/kwok" && go mod tidy -e >/dev/null 2>&1) || true
  go_build "kwok $KWOK_VERSION" "$work/kwok" -ldflags='-s -w' -o "$work/kwok-out/" -- sigs.k8s.io/kwok/cmd/kwok
  mv "$work/kwok-out/kwok" "$bin_dir/kwok"
fi

log "all built in $((SECONDS - start))s: $bin_dir"
echo "$bin_dir"
