#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration and e2e. Needs root (real
# containers, namespaces, cgroups). Sets up the machine first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
