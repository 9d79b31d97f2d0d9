#!/usr/bin/env bash
# Installs what building and testing os-lively needs, when missing:
# etcd (Debian's etcd-server) and protoc (protobuf-compiler); with
# OSLIVELY_E2E=1 (scripts/test.sh sets it) also what `oslively serve`'s
# tests drive: a Prometheus server and promtool (prometheus), headless
# chromium and chromedriver (chromium, chromium-driver).
set -euo pipefail

need=()
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then need+=(etcd-server); fi
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
if [ "${OSLIVELY_E2E:-0}" = 1 ]; then
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
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
