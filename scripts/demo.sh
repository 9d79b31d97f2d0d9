#!/usr/bin/env bash
# The main job, end to end on a throwaway local etcd: see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
cargo build --release --quiet --bin oslively
exec target/release/oslively demo "$@"
