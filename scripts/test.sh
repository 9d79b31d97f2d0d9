#!/usr/bin/env bash
# Every test: unit tests, integration tests against real etcd processes, the
# C/C++/Python examples. Installs etcd and protoc when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RUST_BACKTRACE=1
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# Fault tests start and stop their own etcd members; two cores run them
# comfortably in parallel.
cargo test --quiet -- --test-threads="${OSLIVELY_TEST_THREADS:-2}"
