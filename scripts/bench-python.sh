#!/usr/bin/env bash
# Benchmarks the Python package's drop-in API against raw python-etcd3
# 0.12.0 calls on a private etcd (python/bench/bench.py), in one process.
# etcd3 0.12 needs protobuf 3.x: the venv uses Python 3.10 when pyenv has
# it (protobuf 3.20.3 ships its C++ implementation for 3.10), else python3
# with protobuf's pure-Python implementation (which slows the raw baseline;
# the bench prints which one ran). Extra arguments go to bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
py="${PYTHON:-}"
if [ -z "$py" ]; then
  py=python3
  for v in 3.10 3.9; do
    if command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' 2>/dev/null; then py="python$v"; break; fi
    if command -v pyenv >/dev/null 2>&1; then
      cand=$(ls -d "$(pyenv root)/versions/$v".*/bin/python"$v" 2>/dev/null | tail -n 1 || true)
      if [ -n "$cand" ]; then py="$cand"; break; fi
    fi
  done
fi
venv=target/py-bench-venv
rm -rf "$venv" python/build  # no stale in-tree build output
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check wheel ./python "etcd3==0.12.0" "protobuf==3.20.3"
if ! "$venv/bin/python" -c 'import etcd3' 2>/dev/null; then
  export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python
fi
cd python/bench
exec "../../$venv/bin/python" bench.py "$@"
