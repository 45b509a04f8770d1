#!/usr/bin/env bash
# Builds rclone, for its `serve s3` (a local S3-compatible server the backup tests run restic
# against), from its Go module with the machine's Go toolchain, into a cache outside the
# repository keyed by version. What is cached is never rebuilt.
#
# Output: $cache_root/rclone/$RCLONE_VERSION/bin/rclone. Prints that directory
# (.../rclone/<version>) on its last line of stdout; progress goes to stderr.
# Cache root: $ENCLAVE_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
#
# rclone's go.mod has no replace directives, so it builds as its own main module (its exact
# dependency versions) from a copy of the module's source. Not all of rclone: a main package
# added to the copy links only the command line (cmd), `serve s3` and the local backend, which
# keeps the build a fraction of upstream's (every backend and command). A static binary
# (CGO_ENABLED=0), stripped like upstream's release builds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=rclone
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/rclone/$RCLONE_VERSION"
export CGO_ENABLED=0

module=github.com/rclone/rclone

if [ -x "$out_dir/bin/rclone" ]; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

module_copy "$module" "$RCLONE_VERSION" cmd/serve/s3 "$work/rclone"

# The main package: rclone's own rclone.go with `serve s3` and the local backend instead of
# cmd/all and backend/all (cmd/serve/s3 registers itself under `serve`, which registers itself
# under the root command).
mkdir -p "$work/rclone/cmd/enclave-rclone"
cat > "$work/rclone/cmd/enclave-rclone/main.go" <<'GO'
// Command rclone with `serve s3` over the local backend only.
package main

import (
	_ "github.com/rclone/rclone/backend/local"
	"github.com/rclone/rclone/cmd"
	_ "github.com/rclone/rclone/cmd/serve/s3"
)

func main() {
	cmd.Main()
}
GO

what="rclone $RCLONE_VERSION"
go_build "$what" "$work/rclone" -ldflags='-s -w' -o "$work/out/rclone" -- ./cmd/enclave-rclone
"$work/out/rclone" serve s3 --help >/dev/null || { log "$what: the built binary does not run"; exit 1; }
mkdir -p "$out_dir/bin"
mv "$work/out/rclone" "$out_dir/bin/rclone"

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
