#!/usr/bin/env bash
# The Python package (python/): builds its sdist, then from it the wheel,
# once, the way a release is built (`pip wheel -C zig=true`: maturin
# builds the Rust library in release mode and links it with zig against
# glibc 2.17, no container; see python/build_backend.py), checks that it
# is a manylinux2014 wheel (its tag, `auditwheel show`, and the newest
# GLIBC symbol version its library needs), installs it into a venv of its
# own (import and a call) and into a fresh venv under target/, then runs
# the pytest suite against it with a PATH that has neither cargo nor
# protoc (the wheel must need neither), on a real etcd that the suite
# starts itself (ETCD_BIN or PATH). PYTHON picks the interpreter (>= 3.9;
# default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python="${PYTHON:-python3}"

# The suite, from outside the checkout (so `import os_lively` is the
# installed wheel), with only the venv on PATH: no cargo, no protoc.
run_suite() {
  local etcd_bin="${ETCD_BIN:-$(command -v etcd)}"
  local venv_abs="$PWD/target/py-test-venv"
  cd python/tests
  env PATH="$venv_abs/bin" ETCD_BIN="$etcd_bin" "$venv_abs/bin/python" - <<'PY'
import shutil, sys
for tool in ("cargo", "protoc", "rustc"):
    if shutil.which(tool):
        sys.exit("python-test: %s is on the test PATH (%s)" % (tool, shutil.which(tool)))
PY
  exec env PATH="$venv_abs/bin" ETCD_BIN="$etcd_bin" "$venv_abs/bin/python" -m pytest -q -p no:cacheprovider "$@" .
}

# OSLIVELY_PY_SUITE_ONLY=1: the suite again (scripts/test.sh, on etcd 3.5)
# on the wheel the last full run built and installed.
if [ "${OSLIVELY_PY_SUITE_ONLY:-0}" = 1 ]; then
  [ -x target/py-test-venv/bin/python ] || { echo "python-test: no target/py-test-venv yet: run without OSLIVELY_PY_SUITE_ONLY first" >&2; exit 1; }
  run_suite "$@"
fi

# The committed protobuf module is what protoc makes of the proto now.
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
protoc --python_out="$gen" -I proto proto/os_lively/service.proto
if ! cmp -s "$gen/os_lively/service_pb2.py" python/src/os_lively/service_pb2.py; then
  echo "python/src/os_lively/service_pb2.py is stale; regenerate it with:" >&2
  echo "  protoc --python_out=python/src -I proto proto/os_lively/service.proto" >&2
  exit 1
fi

# The tools that check the wheel and build the sdist, in a venv of their
# own (kept between runs: pip then has nothing to fetch).
tools=target/py-tools-venv
tools_python="$PWD/$tools/bin/python"
[ -x "$tools/bin/python" ] || "$python" -m venv "$tools"
# Also the zig the backend pins (ziglang), for the backend's checks below.
ziglang=$(grep -o '"ziglang==[^"]*"' python/build_backend.py | tr -d '"')
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check "auditwheel>=6,<7" "build>=1,<2" \
  "maturin>=1.5,<2" "$ziglang"

# The sdist (PEP 517, isolated: pip fetches maturin and cffi), and the
# wheel built from it once, as pip builds one where no wheel fits, so the
# wheel under test also proves the sdist complete: `pip wheel -C
# zig=true` (pip fetches maturin, cffi and ziglang) over the unpacked
# sdist, with the repository's target/ as cargo's target dir.
sdists=target/py-sdist
wheels=target/py-wheels
rm -rf "$sdists" "$wheels" python/build
start=$(date +%s)
if ! "$tools/bin/python" -m build --sdist --outdir "$sdists" python >"$gen/sdist.log" 2>&1; then
  cat "$gen/sdist.log" >&2
  echo "python-test: building the sdist failed" >&2
  exit 1
fi
sdist=$(ls "$sdists"/os_lively-*.tar.gz)
mkdir "$sdists/unpacked"
tar -xzf "$sdist" -C "$sdists/unpacked"
sdist_dir=$(ls -d "$PWD/$sdists"/unpacked/os_lively-*)
export CARGO_TARGET_DIR="$PWD/target"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -C zig=true -w "$wheels" "$sdist_dir"
wheel=$(ls "$wheels"/os_lively-*.whl)
echo "python-test: built $(basename "$sdist") and from it $(basename "$wheel") in $(( $(date +%s) - start )) s"
case "$(basename "$wheel")" in
  *-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl) ;;
  *) echo "python-test: expected a py3-none manylinux2014 (glibc 2.17) wheel, got $(basename "$wheel")" >&2; exit 1 ;;
esac

# auditwheel's verdict: the wheel must be consistent with manylinux2014
# (manylinux_2_17) or an older policy.
shown=$("$tools/bin/auditwheel" show "$wheel")
policy=$(printf '%s\n' "$shown" | tr -d '\n' | grep -o 'consistent with the following platform tag: *"[^"]*"' \
  | grep -o '"[^"]*"' | tr -d '"' || true)
echo "python-test: auditwheel show: consistent with ${policy:-nothing}"
case "$policy" in
  manylinux_2_5_*|manylinux_2_12_*|manylinux_2_17_*|manylinux1_*|manylinux2010_*|manylinux2014_*) ;;
  *) echo "python-test: auditwheel does not place the wheel at manylinux2014 or lower:" >&2
     printf '%s\n' "$shown" >&2; exit 1 ;;
esac

# The newest glibc symbol version the bundled library needs, read from its
# dynamic symbol table (what the loader checks), not from any tag.
unpacked=$(mktemp -d)
trap 'rm -rf "$gen" "$unpacked"' EXIT
"$tools/bin/python" -m zipfile -e "$wheel" "$unpacked"
so=$(find "$unpacked" -name '*.so' -path '*os_lively*' | head -n 1)
[ -n "$so" ] || { echo "python-test: no shared library in $(basename "$wheel")" >&2; exit 1; }
newest=$(objdump -T "$so" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
echo "python-test: $(basename "$so") needs GLIBC_$newest at most"
if [ -z "$newest" ] || [ "$(printf '%s\n2.17\n' "$newest" | sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)" != 2.17 ]; then
  echo "python-test: $(basename "$so") needs GLIBC_${newest:-?}, newer than manylinux2014's 2.17" >&2
  exit 1
fi

# The sdist installs: pip built the wheel above from it (an isolated
# build from the unpacked sdist, exactly what `pip install <sdist>` does
# first), and that wheel goes into a venv of its own, which imports it and
# calls it. (A literal `pip install <sdist>` would compile the library
# again, a full release build: maturin's zig wrappers, hence the linker
# and C compiler cargo fingerprints, live under a path that changes with
# every isolated build.)
start=$(date +%s)
sdist_venv=target/py-sdist-venv
rm -rf "$sdist_venv"
"$python" -m venv "$sdist_venv"
"$sdist_venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
sdist_python="$PWD/$sdist_venv/bin/python"
(cd / && "$sdist_python" - <<'PY'
import os_lively
from os_lively import service

assert os_lively.library_version() == os_lively.__version__, (os_lively.library_version(), os_lively.__version__)
assert service.status_itoa(service.Status.DOWN) == "DOWN"
assert "/site-packages/" in os_lively.__file__, os_lively.__file__
print("python-test: the sdist installs: os_lively", os_lively.library_version())
PY
)
echo "python-test: installed the wheel built from $(basename "$sdist") in $(( $(date +%s) - start )) s"
unset CARGO_TARGET_DIR

# Without zig, `pip install ./python` still works: the backend asks
# maturin for a wheel for this machine (tag `linux`) instead of one it
# would refuse to tag manylinux2014; asked for zig that it cannot find,
# it fails naming what to install. (The choice only: building a second
# wheel costs a full release build.)
(cd python && env -u ZIG_COMMAND -u MATURIN_PEP517_ARGS PATH=/usr/bin:/bin "$tools_python" - <<'PY'
import os, sys
import build_backend as b

import importlib.util

# zig found as the ziglang package of the running interpreter (this venv
# has it), then as on a machine without any zig.
assert b._zig_command() == "%s -m ziglang" % sys.executable, b._zig_command()
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "ziglang" else find_spec(name, *a)
assert b._zig_command() is None

assert b._with_platform_tag({})["maturin.build-args"] == "--compatibility off"
assert b._with_platform_tag({"build-args": "--x"}) == {"build-args": "--x"}
try:
    b._with_platform_tag({"zig": "true"})
except SystemExit as e:
    assert "ziglang" in str(e), e
else:
    sys.exit("zig=true without zig did not fail")
assert b.ZIGLANG_REQUIREMENT in b.get_requires_for_build_wheel({"zig": "true"})
assert not any("ziglang" in r for r in b.get_requires_for_build_wheel({}))
os.environ["ZIG_COMMAND"] = "zig-from-env"
assert b._with_platform_tag({})["maturin.build-args"] == "--zig --compatibility manylinux2014"
print("python-test: without zig the backend builds a wheel for this machine; -C zig=true insists on zig")
PY
)

venv=target/py-test-venv
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest hypothesis

run_suite "$@"
