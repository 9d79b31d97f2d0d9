#!/usr/bin/env bash
# Benchmarks os-lively against raw etcd-client on a private etcd (see
# benches/lively.rs). BENCH_QUICK=1 for a ~30 s smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The crash-detection rows SIGKILL the CLI, so build it first.
cargo build --release --bin oslively
cargo bench --bench lively "$@"
