#!/usr/bin/env bash
# Fetches prometheus-operator's CRDs (ServiceMonitor, PrometheusRule, AlertmanagerConfig) from its
# Go module, into a cache outside the repository keyed by version, so that the tests validate the
# chart's monitoring objects against them (kubectl apply --dry-run=server). Nothing is compiled.
#
# Output: $cache_root/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION/crds/*.yaml. Prints that
# directory on its last line of stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=prometheus-operator
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/prometheus-operator/$PROMETHEUS_OPERATOR_VERSION/crds"
module=github.com/prometheus-operator/prometheus-operator
kinds=(servicemonitors prometheusrules alertmanagerconfigs)

if [ -f "$out_dir/monitoring.coreos.com_prometheusrules.yaml" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "$module@$PROMETHEUS_OPERATOR_VERSION: downloading"
src=$(cd "$work" && go mod download -json "$module@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$src/example/prometheus-operator-crd" ] || { log "cannot download $module@$PROMETHEUS_OPERATOR_VERSION"; exit 1; }
mkdir -p "$work/crds"
for kind in "${kinds[@]}"; do
  cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$work/crds/"
done
mkdir -p "$(dirname "$out_dir")"
rm -rf "$out_dir"
mv "$work/crds" "$out_dir"
log "done in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
