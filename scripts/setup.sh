#!/usr/bin/env bash
# Installs what building and testing os-lively needs, when missing:
# etcd (Debian's etcd-server) and protoc (protobuf-compiler).
set -euo pipefail

need=()
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then need+=(etcd-server); fi
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's etcd-server starts a system etcd on :2379; we never use it (tests
# and the demo start their own on free ports), so stop it to save memory.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  ${sudo:-} systemctl stop etcd || true
fi
