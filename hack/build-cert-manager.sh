#!/usr/bin/env bash
# Builds cert-manager's controller from its Go module with the machine's Go toolchain and
# extracts cert-manager's CustomResourceDefinitions, into a cache outside the repository keyed
# by version. What is cached is never rebuilt.
#
# Output: $cache_root/cert-manager/$CERT_MANAGER_VERSION/bin/controller and .../crds/*.yaml
# (plain CRDs for kubectl apply -f). Prints that directory on its last line of stdout; progress
# goes to stderr. Cache root: $ENCLAVE_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/enclave.
#
# cert-manager's cmd/controller is a module of its own (with replaces onto the root module) that
# the Go module proxy does not serve, and its configuration package pulls in the Venafi issuer,
# whose github.com/Venafi/vcert/v5 module the proxy refuses. So the binary is built from a
# wrapper module, hack/cert-manager-launcher, holding a small launcher over the root module's
# packages: the controller context and the self-registering controllers and issuers. Its flags
# keep upstream's names and defaults; it has no --config file and no Venafi issuer. The module's
# go.mod requires cert-manager's root module at $CERT_MANAGER_VERSION; the rest of its
# requirements and its go.sum are resolved at build time, in a go.mod outside the repository.
#
# hack/build-cert-manager.sh --vet runs go vet on the launcher instead (after a build, with the
# module and build caches warm, in seconds).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
log_tag=cert-manager
# shellcheck source=lib.sh
source "$here/lib.sh"

out_dir="$cache_root/cert-manager/$CERT_MANAGER_VERSION"
module=github.com/cert-manager/cert-manager
launcher="$here/cert-manager-launcher"
# <file name in deploy/crds> <metadata.name>
crds=(
  "cert-manager.io_certificates certificates.cert-manager.io"
  "cert-manager.io_certificaterequests certificaterequests.cert-manager.io"
  "cert-manager.io_issuers issuers.cert-manager.io"
  "cert-manager.io_clusterissuers clusterissuers.cert-manager.io"
  "acme.cert-manager.io_orders orders.acme.cert-manager.io"
  "acme.cert-manager.io_challenges challenges.acme.cert-manager.io"
)

have_crds() {
  local entry
  for entry in "${crds[@]}"; do
    [ -s "$out_dir/crds/${entry%% *}.yaml" ] || return 1
  done
}

# resolve_launcher <go.mod>: a go.mod for the launcher's module, its requirements resolved, at
# <go.mod> (go.sum beside it), for the go commands that then run with -modfile=<go.mod> in the
# launcher's directory; the repository's go.mod stays as it is.
resolve_launcher() {
  local modfile=$1 required
  required=$(awk -v m="$module" '$1 == "require" && $2 == m { print $3 } $1 == m { print $2 }' "$launcher/go.mod")
  if [ "$required" != "$CERT_MANAGER_VERSION" ]; then
    log "$launcher/go.mod requires $module ${required:-at no version}, hack/versions.env names $CERT_MANAGER_VERSION: make them agree"
    exit 1
  fi
  cp "$launcher/go.mod" "$modfile"
  (cd "$launcher" && go mod tidy -e -modfile="$modfile" >/dev/null 2>&1) || true
}

if [ "${1:-}" = --vet ]; then
  need_go
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  resolve_launcher "$work/launcher.mod"
  log "go vet $launcher"
  # -trimpath as the build has it, so that vet finds the packages the build compiled.
  (cd "$launcher" && go vet -trimpath -modfile="$work/launcher.mod" .)
  exit 0
elif [ $# -gt 0 ]; then
  log "usage: $0 [--vet]"
  exit 2
fi

if [ -x "$out_dir/bin/controller" ] && have_crds; then
  log "cached in $out_dir"
  echo "$out_dir"
  exit 0
fi

need_go
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "cert-manager $CERT_MANAGER_VERSION: resolving modules"
src=$(cd "$work" && go mod download -json "$module@$CERT_MANAGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$src/deploy" ] || { log "cannot download $module@$CERT_MANAGER_VERSION"; exit 1; }

# CRDs: deploy/crds holds them as controller-gen writes them; the Helm chart's copies are the
# same with template lines around them, rendered here should deploy/crds ever lack one.
render_chart_crd() { # render_chart_crd <template>: drop Helm's conditionals, fill in the labels
  awk '
    /^[[:space:]]*\{\{-? *if \.Values\.crds\.keep *\}\}/ { skip = 1; next }
    skip && /^[[:space:]]*\{\{-? *end *\}\}/ { skip = 0; next }
    skip { next }
    /include "cert-manager\.crd-labels"/ {
      match($0, /^[[:space:]]*/); pad = substr($0, 1, RLENGTH)
      print pad "app: cert-manager"
      print pad "app.kubernetes.io/name: cert-manager"
      print pad "app.kubernetes.io/instance: cert-manager"
      print pad "app.kubernetes.io/component: crds"
      next
    }
    /^[[:space:]]*\{\{-? *(if|end)[^}]*\}\}[[:space:]]*$/ { next }
    { print }
  ' "$1"
}

verify_crd() { # verify_crd <file> <metadata.name>
  if grep -q '{{' "$1"; then
    log "$1: still templated"; return 1
  fi
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 - "$1" "$2" <<'PY' || return 1
import sys, yaml
path, name = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
ok = (len(docs) == 1 and docs[0].get("apiVersion") == "apiextensions.k8s.io/v1"
      and docs[0].get("kind") == "CustomResourceDefinition"
      and (docs[0].get("metadata") or {}).get("name") == name
      and (docs[0].get("spec") or {}).get("versions"))
if not ok:
    sys.exit(f"[cert-manager] {path}: not a CustomResourceDefinition named {name}")
PY
  else
    if ! { grep -q '^apiVersion: apiextensions.k8s.io/v1$' "$1" && grep -q '^kind: CustomResourceDefinition$' "$1" \
      && grep -Eq "^  name: \"?$2\"?$" "$1"; }; then
      log "$1: not a CustomResourceDefinition named $2"; return 1
    fi
  fi
}

if ! have_crds; then
  mkdir -p "$work/crds"
  for entry in "${crds[@]}"; do
    file=${entry%% *} name=${entry#* }
    plain="$src/deploy/crds/$file.yaml" chart="$src/deploy/charts/cert-manager/templates/crd-$file.yaml"
    if [ -f "$plain" ] && ! grep -q '{{' "$plain"; then
      cp "$plain" "$work/crds/$file.yaml"
    elif [ -f "$chart" ]; then
      render_chart_crd "$chart" > "$work/crds/$file.yaml"
    else
      log "no CRD $file in $module@$CERT_MANAGER_VERSION"; exit 1
    fi
    chmod 644 "$work/crds/$file.yaml"
    verify_crd "$work/crds/$file.yaml" "$name"
  done
  mkdir -p "$out_dir/crds"
  mv "$work/crds/"*.yaml "$out_dir/crds/"
  log "CRDs extracted to $out_dir/crds"
fi

if ! [ -x "$out_dir/bin/controller" ]; then
  resolve_launcher "$work/launcher.mod"
  what="controller $CERT_MANAGER_VERSION"
  # The launcher's module sits in the repository: -buildvcs=false leaves its commit out of the
  # binary, as it is out of the other tools', built outside any repository.
  go_build "$what" "$launcher" -modfile="$work/launcher.mod" -buildvcs=false \
    -ldflags="-s -w -X $module/pkg/util.AppVersion=$CERT_MANAGER_VERSION" -o "$work/out/controller" -- .
  mkdir -p "$out_dir/bin"
  mv "$work/out/controller" "$out_dir/bin/controller"
fi

log "all built in $((SECONDS - start))s: $out_dir"
echo "$out_dir"
