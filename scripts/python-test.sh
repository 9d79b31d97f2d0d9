#!/usr/bin/env bash
# The Python package (python/): builds its wheel once, the way users get it
# (`pip wheel ./python`: maturin builds the Rust library in release mode
# and packages it, see python/build_backend.py), installs that wheel into a
# fresh venv under target/, then runs the pytest suite against it with a
# PATH that has neither cargo nor protoc (the wheel must need neither),
# on a real etcd that the suite starts itself (ETCD_BIN or PATH). PYTHON
# picks the interpreter (>= 3.9; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python="${PYTHON:-python3}"

# The committed protobuf module is what protoc makes of the proto now.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
protoc --python_out="$gen" -I proto proto/os_lively/service.proto
if ! cmp -s "$gen/os_lively/service_pb2.py" python/src/os_lively/service_pb2.py; then
  echo "python/src/os_lively/service_pb2.py is stale; regenerate it with:" >&2
  echo "  protoc --python_out=python/src -I proto proto/os_lively/service.proto" >&2
  exit 1
fi

# The wheel, built once (an isolated PEP 517 build: pip fetches maturin and cffi).
wheels=target/py-wheels
rm -rf "$wheels" python/build
start=$(date +%s)
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" ./python
wheel=$(ls "$wheels"/os_lively-*.whl)
echo "python-test: built $(basename "$wheel") in $(( $(date +%s) - start )) s"
case "$(basename "$wheel")" in
  *-py3-none-manylinux_*) ;;
  *) echo "python-test: expected a py3-none-manylinux wheel, got $(basename "$wheel")" >&2; exit 1 ;;
esac

venv=target/py-test-venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest hypothesis

# The suite, from outside the checkout (so `import os_lively` is the
# installed wheel), with only the venv on PATH: no cargo, no protoc.
etcd_bin="${ETCD_BIN:-$(command -v etcd)}"
venv_abs="$PWD/$venv"
cd python/tests
env PATH="$venv_abs/bin" ETCD_BIN="$etcd_bin" "$venv_abs/bin/python" - <<'PY'
import shutil, sys
for tool in ("cargo", "protoc", "rustc"):
    if shutil.which(tool):
        sys.exit("python-test: %s is on the test PATH (%s)" % (tool, shutil.which(tool)))
PY
exec env PATH="$venv_abs/bin" ETCD_BIN="$etcd_bin" "$venv_abs/bin/python" -m pytest -q -p no:cacheprovider "$@" .
