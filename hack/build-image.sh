#!/usr/bin/env bash
# Builds the operator's container image without a container engine: a static enclave-operator
# (glibc linked in with -C target-feature=+crt-static; TLS is rustls, so no OpenSSL either) in an
# OCI image layout assembled with umoci (Debian: apt-get install umoci).
#
# Output: $target_dir/image/oci, an OCI image layout tagged <version> (the crate's version; push it
# as enclave-operator:<version>, e.g. skopeo copy oci:<dir>:<version> docker://<registry>/...),
# and the same layout as an oci-archive, $target_dir/image/enclave-operator-<version>.oci.tar.
# Prints the layout's directory on its last line of stdout; progress goes to stderr.
# Target directory: $CARGO_TARGET_DIR, else the workspace's target/ (what cargo metadata says).
#
# The image holds one layer: the binary at /usr/local/bin/enclave-operator, /etc/passwd and
# /etc/group naming root and nonroot (65532), nonroot's home and /tmp (1777). No shell, no libc
# (glibc's static resolver reads /etc/hosts and /etc/resolv.conf, which the kubelet mounts), no
# CA bundle: the operator trusts the cluster's CA from its service account, and backup pods get
# theirs mounted. It runs as 65532:65532, entrypoint the binary, cmd `run`, ports 8080 (admin:
# health and metrics) and 9443 (admission guard and credentials broker), with the OCI labels.
#
# The cargo build is incremental: a second run rebuilds the image only. The layer is
# reproducible: every file's mtime, the config's and the history's dates are SOURCE_DATE_EPOCH
# (default: the date of the last commit), and the owners fixed (root; nonroot's home, 65532).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
log_tag=image
# shellcheck source=lib.sh
source "$here/lib.sh"

command -v umoci >/dev/null || { log "umoci not found: apt-get install umoci"; exit 1; }
command -v readelf >/dev/null || { log "readelf not found: apt-get install binutils"; exit 1; }

# The host's glibc target: the one whose static glibc the linker has (libc6-dev ships libc.a).
target=$(rustc -vV | sed -n 's/^host: //p')
case "$target" in
  x86_64-*-linux-gnu) arch=amd64 ;;
  aarch64-*-linux-gnu) arch=arm64 ;;
  *) log "unsupported host $target: build on x86_64 or aarch64 Linux with glibc"; exit 1 ;;
esac
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { log "cargo metadata names no target directory"; exit 1; }

# The image profile (Cargo.toml): release, optimised at level 1 so that a cold build stays short.
# hack/test.sh sets ENCLAVE_IMAGE_PROFILE=image-ci: unoptimised (its test checks the packaging,
# not the speed), a cold build of a few minutes less on CI's two cores.
profile=${ENCLAVE_IMAGE_PROFILE:-image}
log "building enclave-operator ($profile profile, static, $target)"
(cd "$root" && RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --profile "$profile" --locked -p enclave-operator --target "$target" >&2)
bin="$target_dir/$target/$profile/enclave-operator"
log "built in $((SECONDS - start))s: $bin"

# Static: no program interpreter and no shared library needed.
headers=$(readelf -lW "$bin")
dynamic=$(readelf -dW "$bin")
if grep -q 'program interpreter' <<<"$headers" || grep -q '(NEEDED)' <<<"$dynamic"; then
  log "$bin is dynamically linked"
  exit 1
fi
version=$("$bin" --version)
version=${version#enclave-operator }
tag=$version
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$root/operator/Cargo.toml")
license=$(sed -n 's/^license = "\(.*\)"$/\1/p' "$root/Cargo.toml")
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d "$target_dir/image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
bundle="$work/bundle"
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)

log "enclave-operator:$tag: assembling the root filesystem"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack ${rootless[@]+"${rootless[@]}"} --image "$layout:$tag" "$bundle"
rootfs="$bundle/rootfs"
install -d -m 0755 "$rootfs/etc" "$rootfs/usr" "$rootfs/usr/local" "$rootfs/usr/local/bin"
install -d -m 1777 "$rootfs/tmp"
# The home /etc/passwd names, the user's own (the owner is kept only when umoci runs as root).
install -d -m 0755 "$rootfs/home"
install -d -m 0700 "$rootfs/home/nonroot"
[ ${#rootless[@]} -gt 0 ] || chown 65532:65532 "$rootfs/home/nonroot"
install -m 0755 "$bin" "$rootfs/usr/local/bin/enclave-operator"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
find "$rootfs" -exec touch -h -d "@$epoch" {} +
umoci repack --image "$layout:$tag" \
  --history.created "$created" --history.created_by "hack/build-image.sh" \
  --history.comment "enclave-operator $version, static" "$bundle"

log "enclave-operator:$tag: writing the configuration"
labels=(
  "org.opencontainers.image.title=enclave-operator"
  "org.opencontainers.image.description=$description"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.source=https://github.com/enclave-dev/enclave"
  "org.opencontainers.image.licenses=$license"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.created=$created"
)
config=(
  --config.user 65532:65532
  --config.entrypoint /usr/local/bin/enclave-operator
  --config.cmd run
  --config.workingdir /
  --config.exposedports 8080/tcp
  --config.exposedports 9443/tcp
  --architecture "$arch" --os linux
  --created "$created"
)
for label in "${labels[@]}"; do
  config+=(--config.label "$label" --manifest.annotation "$label")
done
umoci config --no-history --image "$layout:$tag" "${config[@]}"
umoci gc --layout "$layout"
# umoci writes blobs readable by their owner only.
chmod -R a+rX "$layout"

out_dir="$target_dir/image"
mkdir -p "$out_dir"
rm -rf "$out_dir/oci"
mv "$layout" "$out_dir/oci"
archive="$out_dir/enclave-operator-$version.oci.tar"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
  -C "$out_dir/oci" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"

log "enclave-operator:$tag in $((SECONDS - start))s: $(du -sh "$out_dir/oci" | cut -f1) ($archive)"
echo "$out_dir/oci"
