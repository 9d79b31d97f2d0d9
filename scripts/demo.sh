#!/usr/bin/env bash
# The main job, end to end on a throwaway local etcd: see README.md.
# Built in the `demo` profile (Cargo.toml): no optimisation, no debug info,
# the quickest build from a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
cargo build --quiet --profile demo --bin oslively
exec target/demo/oslively demo "$@"
