#!/usr/bin/env bash
# The long fault run (issue "Faults and bad input"): the operator killed at random points while
# tenants come and go, the API server and etcd restarted, two leaders, a conflicting field
# manager, a Tenant edited every 100 ms, the webhook down, a slow and lossy API. Prints the
# table (scenario, runs, converged, time to converge p50/p99, orphans, duplicates, claims lost,
# unexpected log lines) and its JSON. Arguments go to the run: --tenants 200 --kills 100
# --storm-seconds 60 --outage-seconds 60 --slow-tenants 20 (the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
ENCLAVE_BIN_DIR=$(hack/build-controlplane.sh | tail -n 1)
ENCLAVE_HELM_DIR=$(hack/build-helm.sh | tail -n 1)
export ENCLAVE_BIN_DIR ENCLAVE_HELM_DIR
cargo build --quiet --package enclave-operator --bin enclave-operator
exec cargo run --quiet --package enclave-tests --bin chaos -- "$@"
