#!/usr/bin/env bash
# Installs what building and testing os-lively needs, when missing:
# etcd (Debian's etcd-server) and protoc (protobuf-compiler); for the C
# and C++ tests g++, clang++ with its sanitizer runtimes, cmake and
# pkg-config, and cargo-c (`cargo cinstall`, see below); for the Go and
# Node.js examples Go (golang-go), Node.js and npm; with
# OSLIVELY_E2E=1 (scripts/test.sh sets it) also what `oslively serve`'s
# tests drive: a Prometheus server and promtool (prometheus), headless
# chromium and chromedriver (chromium, chromium-driver).
#
# `scripts/setup.sh demo` (scripts/demo.sh) installs only what the demo
# needs: etcd and protoc. The C toolchain, valgrind and cargo-c are for
# the tests alone, and on a fresh machine they cost minutes.
set -euo pipefail
mode="${1:-test}"

need=()
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then need+=(etcd-server); fi
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto, which
# etcd-client's protos import) are in libprotobuf-dev, only a Recommends of
# protobuf-compiler, and we install without recommends.
[ -e /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ "$mode" = test ]; then
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v clang++ >/dev/null 2>&1 || need+=(clang)
# clang's ASan/UBSan runtimes are a separate package on Debian.
clang_rt="$(clang -print-resource-dir 2>/dev/null || true)/lib/linux/libclang_rt.asan-x86_64.a"
[ -e "$clang_rt" ] || need+=(libclang-rt-dev)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The C examples' memory check (tests/c_api.rs) runs under valgrind; without
# it that test would have nothing to run.
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
# The Go and Node.js examples over the C ABI (tests/other_languages.rs):
# Debian's Go for cgo, and a Node.js with npm for koffi. A Node.js that
# brings its own npm (NodeSource's) is kept: Debian's npm would conflict.
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${OSLIVELY_E2E:-0}" = 1 ]; then
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's etcd-server starts a system etcd on :2379; we never use it (tests
# and the demo start their own on free ports), so stop it to save memory.
# Debian's prometheus package likewise starts a system Prometheus on :9090
# (and prometheus-node-exporter, when recommends are installed).
for unit in etcd prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    ${sudo:-} systemctl stop "$unit" || true
  fi
done

# cargo-c, for `cargo cinstall` (tests/c_install.rs). Not Debian's: its
# 0.9 cannot read edition-2024 manifests. Pinned to the newest release
# that builds with rustc 1.95 (0.10.25 wants a newer cargo), --locked for
# the dependency versions it was released with, and --debug: a release
# build costs ~15 CPU-minutes (about 8 min on 2 cores), a debug one about
# half, and cargo-c only drives cargo, so its own speed does not matter.
CARGO_C_VERSION=0.10.24
if [ "$mode" = test ] && ! cargo cinstall --version 2>/dev/null | grep -q "$CARGO_C_VERSION"; then
  echo "setup: installing cargo-c $CARGO_C_VERSION (cargo install --debug, a few minutes)" >&2
  CARGO_PROFILE_DEV_DEBUG=0 cargo install cargo-c --version "$CARGO_C_VERSION" --locked --debug --quiet
fi
