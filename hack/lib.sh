# shellcheck shell=bash
# What the tool builds (hack/build-*.sh) share: the cache root, the Go environment, logging and
# the progress of long builds. Sourced, after setting log_tag (the name each line is logged
# under): log_tag=restic; source "$here/lib.sh".

# The built tools are cached outside the repository, keyed by version.
# shellcheck disable=SC2034 # for the scripts that source this
cache_root=${ENCLAVE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/enclave}
export GOFLAGS=-mod=mod
# An older Go fetches the toolchain the modules need through the module proxy.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
# Each module builds on its own, whatever go.work lies above it.
export GOWORK=off
start=$SECONDS

# Progress and errors go to stderr: stdout is left for the result, the scripts' last line.
log() { printf '[%s] %s\n' "${log_tag:?set log_tag before sourcing lib.sh}" "$*" >&2; }

need_go() {
  command -v go >/dev/null || { log "Go toolchain not found: install Go 1.26 or newer"; exit 1; }
}

# progress <what> <total>: reads go build -v, which names each package it compiles, and counts
# them against the dependency total so that a long first build shows how far it has got.
progress() {
  local what=$1 total=$2 n=0 last=0 line
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

# go_build <what> <module dir> [go build flags...] -- <packages...>: go build -v -trimpath in
# <module dir>, logging its progress. The flags that choose the packages (-tags=..., -modfile=...)
# count for the dependency total too. Exits the script when the build fails.
go_build() {
  local what=$1 dir=$2 flags=() list_flags=() total
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case "$1" in -tags=*|-modfile=*) list_flags+=("$1") ;; esac
    flags+=("$1")
    shift
  done
  if [ $# -gt 0 ]; then shift; fi # --
  # Should the packages not resolve, go build says why.
  total=$(cd "$dir" && { go list ${list_flags[@]+"${list_flags[@]}"} -deps "$@" 2>/dev/null || true; } | wc -l)
  log "$what: building ($total packages)"
  if ! (cd "$dir" && go build -v -trimpath ${flags[@]+"${flags[@]}"} "$@" 2>&1) | progress "$what" "$total"; then
    log "$what: build failed"
    exit 1
  fi
  log "$what: done, $((SECONDS - start))s elapsed"
}

# module_copy <module> <version> <path it must hold> <dest>: downloads a Go module through the
# proxy and copies its source to <dest>, writable (the module cache is read-only, and Go may
# want to touch go.sum), for a module without replace directives, which then builds as its own
# main module with its exact dependency versions. Exits the script otherwise.
module_copy() {
  local module=$1 version=$2 holds=$3 dest=$4 src
  log "$module@$version: resolving modules"
  src=$(cd "$(dirname "$dest")" && go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -e "$src/$holds" ] || { log "cannot download $module@$version"; exit 1; }
  if grep -Eq '^[[:space:]]*replace\b' "$src/go.mod"; then
    log "$module@$version: go.mod now has replace directives: build it from a wrapper module"
    exit 1
  fi
  cp -R "$src" "$dest"
  chmod -R u+w "$dest"
}
