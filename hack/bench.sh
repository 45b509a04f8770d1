#!/usr/bin/env bash
# The scale benchmark (issue "Scale"): for each N, a fresh local control plane, N tenants
# created against the release operator (its own process) and the same objects applied by a bare
# client; prints the table (cold start, ratio, create -> Ready p50/p99, reads and writes per
# reconcile from the audit log, RSS, CPU) and writes target/bench/bench.json and bench.png.
# Usage: hack/bench.sh [--full N]... [--one-by-one N] [N...]
#   (defaults: 100 300 1000 minimal tenants and 100 full ones).
set -euo pipefail
cd "$(dirname "$0")/.."
ENCLAVE_BIN_DIR=$(hack/build-controlplane.sh | tail -n 1)
ENCLAVE_HELM_DIR=$(hack/build-helm.sh | tail -n 1)
export ENCLAVE_BIN_DIR ENCLAVE_HELM_DIR
echo "==> building the release operator" >&2
cargo build --quiet --release --package enclave-operator --bin enclave-operator
export ENCLAVE_OPERATOR_BINARY="$PWD/target/release/enclave-operator"
exec cargo run --quiet --release --package enclave-tests --bin bench -- "$@"
