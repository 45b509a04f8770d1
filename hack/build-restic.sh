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

cache_root=${ENCLAVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/enclave}
out_dir="$cache_root/restic/$RESTIC_VERSION"
export GOFLAGS=-mod=mod
# An older Go fetches the toolchain the modules need through the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
export CGO_ENABLED=0

module=github.com/restic/restic
tags=disable_grpc_modules

log() { printf '[restic] %s\n' "$*" >&2; }

if [ -x "$out_dir/bin/restic" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

command -v go >/dev/null || { log "Go toolchain not found: install Go 1.26 or newer"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

log "restic $RESTIC_VERSION: resolving modules"
src=$(cd "$work" && go mod download -json "$module@$RESTIC_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$src/cmd/restic" ] || { log "cannot download $module@$RESTIC_VERSION"; exit 1; }
if grep -Eq '^[[:space:]]*replace\b' "$src/go.mod"; then
  log "$module@$RESTIC_VERSION: go.mod now has replace directives: build it from a wrapper module"
  exit 1
fi
# The module cache is read-only: build from a writable copy, should Go want to touch go.sum.
cp -R "$src" "$work/restic"
chmod -R u+w "$work/restic"

# go build -v names each package it compiles: count them against the dependency total so a
# long first build shows how far it has got.
progress() {
  local what=$1 total=$2 n=0 last=0
  while IFS= read -r line; do
    case "$line" in
      *" "*|"") printf '%s\n' "$line" >&2 ;; # errors and notes pass through
      *) n=$((n + 1)) ;;
    esac
    if [ $((SECONDS - last)) -ge 10 ]; then
      last=$SECONDS
      log "$what: $n/$total packages compiled, $((SECONDS - start))s elapsed"
    fi
  done
}

what="restic $RESTIC_VERSION"
total=$(cd "$work/restic" && go list -tags "$tags" -deps ./cmd/restic 2>/dev/null | wc -l)
log "$what: building ($total packages)"
(cd "$work/restic" && go build -v -trimpath -tags "$tags" -ldflags='-s -w' \
  -o "$work/out/restic" ./cmd/restic 2>&1) | progress "$what" "$total"
[ "${PIPESTATUS[0]}" -eq 0 ] || { log "$what: build failed"; exit 1; }
"$work/out/restic" version >/dev/null || { log "$what: the built binary does not run"; exit 1; }
mkdir -p "$out_dir/bin"
mv "$work/out/restic" "$out_dir/bin/restic"
log "$what: done, $((SECONDS - start))s elapsed"

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
