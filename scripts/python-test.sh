#!/usr/bin/env bash
# The Python package (python/): `pip install ./python` into a fresh venv
# under target/ (which builds the Rust library in release mode and carries
# it inside the wheel), then its pytest suite against a real etcd that the
# suite starts itself (ETCD_BIN or PATH). PYTHON picks the interpreter
# (>= 3.9; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
venv=target/py-test-venv
rm -rf "$venv" python/build  # no stale in-tree build output
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./python pytest hypothesis
# Run from outside the checkout so `import os_lively` is the installed wheel.
cd python/tests
exec "../../$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
