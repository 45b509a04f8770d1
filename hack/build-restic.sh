#!/usr/bin/env bash
# Builds restic, the backup tool the backup Jobs run, from its Go module with the machine's Go
# toolchain, into a cache outside the repository keyed by version. What is cached is never rebuilt.
#
# Output: $cache_root/restic/$RESTIC_VERSION/bin/restic. Prints that directory (.../restic/<version>)
# on its last line of stdout; progress goes to stderr.
# Cache root: $ENCLAVE_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
#
# restic's go.mod has no replace directives, so it builds as its own main module (its exact
# dependency versions and godebug settings) from a copy of the module's source. Like upstream's
# release builds it is a static binary (CGO_ENABLED=0) with the disable_grpc_modules tag (which
# keeps the gRPC parts of the Google Cloud client out); unlike them it has no self-update command.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=restic
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/restic/$RESTIC_VERSION"
export CGO_ENABLED=0

module=github.com/restic/restic
tags=disable_grpc_modules

if [ -x "$out_dir/bin/restic" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

module_copy "$module" "$RESTIC_VERSION" cmd/restic "$work/restic"

what="restic $RESTIC_VERSION"
go_build "$what" "$work/restic" -tags="$tags" -ldflags='-s -w' -o "$work/out/restic" -- ./cmd/restic
"$work/out/restic" version >/dev/null || { log "$what: the built binary does not run"; exit 1; }
mkdir -p "$out_dir/bin"
mv "$work/out/restic" "$out_dir/bin/restic"

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
