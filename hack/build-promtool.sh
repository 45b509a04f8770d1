#!/usr/bin/env bash
# Builds promtool, which unit-tests the chart's PrometheusRule alerts (promtool test rules), from
# Prometheus's Go module with the machine's Go toolchain, into a cache outside the repository keyed
# by version. What is cached is never rebuilt.
#
# Output: $cache_root/promtool/$PROMETHEUS_VERSION/bin/promtool. Prints that directory on its last
# line of stdout; progress goes to stderr. Cache root: $ENCLAVE_CACHE_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
#
# Prometheus's go.mod has no replace directives, so promtool builds as its own main module from a
# writable copy of the module's source, static (CGO_ENABLED=0), with upstream's `remove_all_sd`
# build tag: none of the service-discovery plugins (cloud SDKs) that rule tests never use, about
# a fifth fewer packages to compile.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=promtool
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/promtool/$PROMETHEUS_VERSION"
export CGO_ENABLED=0
module=github.com/prometheus/prometheus

if [ -x "$out_dir/bin/promtool" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

module_copy "$module" "$PROMETHEUS_VERSION" cmd/promtool "$work/prometheus"

what="promtool $PROMETHEUS_VERSION"
go_build "$what" "$work/prometheus" -tags=remove_all_sd -ldflags='-s -w' -o "$work/out/promtool" -- ./cmd/promtool
"$work/out/promtool" --version >/dev/null || { log "$what: the built binary does not run"; exit 1; }
mkdir -p "$out_dir/bin"
mv "$work/out/promtool" "$out_dir/bin/promtool"

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
