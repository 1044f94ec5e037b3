#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the web dashboard's browser tests (no browser download needed).
# Idempotent: quick when both are installed. Prints the chromedriver path.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  command -v apt-get >/dev/null || { echo "[browser] install chromium and chromedriver by hand" >&2; exit 1; }
  echo "[browser] installing chromium and chromium-driver (apt)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/tmp/observatory-browser-apt.log 2>&1 \
    || { echo "[browser] apt-get install chromium chromium-driver failed (see /tmp/observatory-browser-apt.log)" >&2; exit 1; }
fi
command -v chromedriver
