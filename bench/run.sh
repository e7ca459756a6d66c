#!/usr/bin/env bash
# Runs one benchmark with release builds of everything it drives:
#   bash bench/run.sh store|api|runtime|cri|scheduler|agent|cluster|proxy|dns|pull|lifecycle [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  cri) bash scripts/setup.sh containerd containernetworking-plugins ;;  # the CRI benchmark's peer
  agent|cluster|pull) bash scripts/setup.sh podman ;;  # a peer of the agent, cluster and pull benchmarks
  dns) bash scripts/setup.sh dnsmasq-base ;;  # the DNS benchmark's peer: the binary, no service
  *) bash scripts/setup.sh ;;
esac
cargo build --release -p r8s -p r8s-bench
exec target/release/r8s-bench "$@"
