#!/usr/bin/env bash
# Installs what r8s's build, tests and benchmarks need on a fresh Debian 12 machine,
# plus any Debian packages named as arguments (peers that only a benchmark uses).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root "$@"

packages=(
  gcc libc6-dev      # the C compiler and libc that rustc links with (and ring, zstd, mimalloc build with)
  ca-certificates    # cargo's downloads from crates.io (TLS)
  etcd-server        # the etcd backend's tests and the store benchmark's peer
  protobuf-compiler  # protoc, for the gRPC crates (etcd-client, CRI)
  libprotobuf-dev    # google/protobuf/*.proto, which etcd-client's protos import (protoc alone lacks them)
  busybox-static     # the root filesystem of test images
  iproute2           # ip netns / veth for pod networking tests
  nftables           # the node proxy
  runc crun          # peers in the runtime benchmark
  docker-registry    # the registry image pull tests push to and pull from (loopback)
  skopeo             # the peer in the pull benchmark
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
