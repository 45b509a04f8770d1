#!/usr/bin/env bash
# Builds helm, which lints, renders and installs charts/enclave in the tests, from its Go module
# with the machine's Go toolchain, into a cache outside the repository keyed by version. What is
# cached is never rebuilt.
#
# Output: $cache_root/helm/$HELM_VERSION/bin/helm. Prints that directory on its last line of
# stdout; progress goes to stderr. Cache root: $ENCLAVE_CACHE_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
#
# helm's go.mod has no replace directives, so it builds as its own main module (its exact
# dependency versions) from a writable copy of the module's source, static like upstream's
# release builds (CGO_ENABLED=0).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=helm
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/helm/$HELM_VERSION"
export CGO_ENABLED=0
module=helm.sh/helm/v3

if [ -x "$out_dir/bin/helm" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

module_copy "$module" "$HELM_VERSION" cmd/helm "$work/helm"

what="helm $HELM_VERSION"
# The version helm reports (helm version) is set at link time, as upstream's Makefile does.
go_build "$what" "$work/helm" \
  -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  -o "$work/out/helm" -- ./cmd/helm
"$work/out/helm" version >/dev/null || { log "$what: the built binary does not run"; exit 1; }
mkdir -p "$out_dir/bin"
mv "$work/out/helm" "$out_dir/bin/helm"

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
