#!/bin/sh
# Build the fedmcp container image from this source tree: a static x86_64 musl binary, the
# build machine's CA bundle and deploy/container/host.toml, on an empty base (Containerfile).
#
#   deploy/container/build.sh [IMAGE]        # default IMAGE: fedmcp:latest
#
# Needs rustup (the x86_64-unknown-linux-musl target is added), musl-gcc (Debian: apt install
# musl-tools; ring and mimalloc compile C) and podman or buildah (Debian: apt install podman).
# CARGO_TARGET_DIR is honoured.
set -eu
image=${1:-fedmcp:latest}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
musl=x86_64-unknown-linux-musl

rustup target add "$musl"
cargo build --release --locked --target "$musl" -p fedmcp

stage=target/container
rm -rf "$stage"
mkdir -p "$stage/cache"
cp "$target_dir/$musl/release/fedmcp" "$stage/fedmcp"
strip "$stage/fedmcp" 2>/dev/null || true
cp /etc/ssl/certs/ca-certificates.crt "$stage/ca-certificates.crt"

if command -v podman >/dev/null 2>&1; then
    podman build -t "$image" -f Containerfile .
else
    buildah bud -t "$image" -f Containerfile .
fi
echo "built $image; try: podman run --rm -p 127.0.0.1:8931:8931 -v ./plugins:/plugins:ro $image"
