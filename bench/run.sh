#!/usr/bin/env bash
# Runs one benchmark with release builds of everything it drives:
#   bash bench/run.sh store|api|runtime|cri|scheduler [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p r8s -p r8s-bench
exec target/release/r8s-bench "$@"
