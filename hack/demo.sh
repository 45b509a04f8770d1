#!/usr/bin/env bash
# The demo: builds (once) and starts the local control plane, or uses the cluster of $KUBECONFIG,
# installs the CRDs, runs the operator, applies examples/tenants, and shows what Enclave made,
# ending with `kubectl enclave report` of the full example tenant (initech).
# Interactive, it keeps the cluster up until Ctrl-C; otherwise it exits when done.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KUBECONFIG:-}" ]; then
  ENCLAVE_BIN_DIR=$(hack/build-controlplane.sh | tail -n 1)
  export ENCLAVE_BIN_DIR
fi
# The kubectl plugin the demo runs (`kubectl enclave report`), beside the demo's binary.
cargo build --quiet --package enclave-operator --bin kubectl-enclave
exec cargo run --quiet --package enclave-tests --bin demo
