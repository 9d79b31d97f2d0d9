#!/usr/bin/env bash
# Benchmarks os-lively against raw etcd-client on a private etcd (see
# benches/lively.rs), then the Python package's drop-in API against raw
# python-etcd3 (python/bench/bench.py; BENCH_SKIP_PYTHON=1 skips it).
# BENCH_QUICK=1 for a ~30 s smoke run. BENCH_SCALE=1 adds the 100,000-service
# fleet rows (several minutes; BENCH_SCALE=<n> for another size).
# BENCH_ONLY=fleet-clients BENCH_SKIP_PYTHON=1: 2,000 daemon clients and 200
# watchers on a three-member etcd, then through etcd's grpc-proxy (etcd load
# per idle daemon, change latency, a 10% crash, member restarts, memory);
# FLEET_CLIENTS, FLEET_WATCHERS, FLEET_QUICK=1 and the rest are described in
# benches/lively/fleet_clients.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The crash-detection rows SIGKILL the CLI, so build it first.
cargo build --release --bin oslively
cargo bench --bench lively "$@"
if [ "${BENCH_SKIP_PYTHON:-0}" != 1 ]; then
  if [ "${BENCH_QUICK:-0}" = 1 ]; then
    scripts/bench-python.sh --rounds 3 --reads 100 --writes 60
  else
    scripts/bench-python.sh
  fi
fi
