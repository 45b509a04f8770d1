#!/usr/bin/env bash
# Runs every test: formatting, lints, the CRD YAML's freshness, unit tests, and the integration
# tests on the local control plane (built once from source, then cached). Afterwards, checks
# that no control-plane process outlived the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

echo "==> disk: $(df -h --output=avail . | tail -n 1 | tr -d ' ') available (a cold build takes about 6 GB)"
ENCLAVE_BIN_DIR=$(hack/build-controlplane.sh | tail -n 1)
export ENCLAVE_BIN_DIR
# cert-manager's controller and CRDs, for the test of cert-manager as an issuer.
ENCLAVE_CERT_MANAGER_DIR=$(hack/build-cert-manager.sh | tail -n 1)
export ENCLAVE_CERT_MANAGER_DIR
# helm: every test binary installs the chart's RBAC and webhook, and runs the operator as the
# chart's service account; tests/tests/chart.rs lints, installs, upgrades and uninstalls it.
ENCLAVE_HELM_DIR=$(hack/build-helm.sh | tail -n 1)
export ENCLAVE_HELM_DIR
# prometheus-operator's CRDs, to validate the chart's ServiceMonitor and PrometheusRule.
ENCLAVE_PROMETHEUS_OPERATOR_CRDS=$(hack/fetch-prometheus-operator-crds.sh | tail -n 1)
export ENCLAVE_PROMETHEUS_OPERATOR_CRDS
# restic, for the test that runs the backup Job's script against a local repository.
ENCLAVE_RESTIC_DIR=$(hack/build-restic.sh | tail -n 1)
export ENCLAVE_RESTIC_DIR
# rclone, whose `serve s3` is the S3-compatible server that test runs restic against.
ENCLAVE_RCLONE_DIR=$(hack/build-rclone.sh | tail -n 1)
export ENCLAVE_RCLONE_DIR
# promtool, for the unit tests of the chart's alerts (tests/tests/monitoring.rs).
ENCLAVE_PROMTOOL_DIR=$(hack/build-promtool.sh | tail -n 1)
export ENCLAVE_PROMTOOL_DIR
# The operator's image (a static binary in an OCI layout, built with umoci), for its test.
ENCLAVE_IMAGE_DIR=$(ENCLAVE_IMAGE_PROFILE=image-ci hack/build-image.sh | tail -n 1)
export ENCLAVE_IMAGE_DIR

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> gofmt and go vet: hack/cert-manager-launcher"
gofmt=$(command -v gofmt || echo "$(go env GOROOT)/bin/gofmt")
unformatted=$("$gofmt" -l hack/cert-manager-launcher)
[ -z "$unformatted" ] || { echo "not gofmt-formatted (run 'gofmt -w hack/cert-manager-launcher'):"; echo "$unformatted"; exit 1; }
hack/build-cert-manager.sh --vet
echo "==> CRD YAML is generated from the types"
cargo run --quiet --package enclave-crds --bin crdgen | diff -u charts/enclave/files/crds/tenants.enclave.dev.yaml - \
  || { echo "the CRD YAML is stale: run 'cargo run -p enclave-crds --bin crdgen > charts/enclave/files/crds/tenants.enclave.dev.yaml'"; exit 1; }
echo "==> cargo build --bins: enclave-operator and kubectl-enclave (tests/tests/chart.rs and incidents.rs run them)"
cargo build --quiet --package enclave-operator --bins
echo "==> cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e

echo "==> no control-plane process left behind"
sleep 3 # the reaper of each test binary stops what it started within a second or two
left=$( (pgrep -f "^$ENCLAVE_BIN_DIR/"; pgrep -f "^$ENCLAVE_CERT_MANAGER_DIR/bin/") || true)
if [ -n "$left" ]; then
  echo "left running:"; ps -o pid,args -p "$(echo "$left" | paste -sd,)"
  exit 1
fi
echo "==> disk: $(du -sh target 2>/dev/null | cut -f1) in target/, $(df -h --output=avail . | tail -n 1 | tr -d ' ') left"
echo "done in $((SECONDS - start))s"
# One closing line for the whole run: the per-binary lines above end on doc-test binaries with
# no tests.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
exit "$status"
