#!/usr/bin/env bash
# The whole test suite: installs into .venv, starts the real servers, lints, runs pytest, stops the servers.
# Extra arguments go to pytest. OBSERVATORY_KEEP_SERVICES=1 leaves the servers running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_pid="" services_started=""
cleanup() {
  if [ -n "$k8s_pid" ]; then kill -- "-$k8s_pid" 2>/dev/null || true; fi  # the build and its go children
  if [ -n "$services_started" ] && [ "${OBSERVATORY_KEEP_SERVICES:-0}" != 1 ]; then scripts/services.sh down; fi
}
trap cleanup EXIT

# The control plane for the KubeRay tests (~20 min the first time, then cached) builds while the rest installs.
k8s_log=$(mktemp /tmp/observatory-k8s-build.XXXXXX)
if command -v go >/dev/null; then setsid scripts/k8s.sh build >"$k8s_log" 2>&1 & k8s_pid=$!; fi
scripts/bootstrap.sh
scripts/browser.sh >/dev/null  # chromium + chromedriver for the web dashboard's browser tests
services_started=1
scripts/services.sh up --observability  # installs Go too, where it is missing
if [ -n "$k8s_pid" ]; then
  wait "$k8s_pid" || { cat "$k8s_log" >&2; exit 1; }
  k8s_pid=""
  cat "$k8s_log" >&2
else
  scripts/k8s.sh build
fi
rm -f "$k8s_log"
eval "$(scripts/services.sh env)"
.venv/bin/ruff check .
.venv/bin/python -m contracts.export --check
.venv/bin/python -m contracts.compat
.venv/bin/python -m kuberay.render --check
.venv/bin/python -m pytest --durations=15 "$@"
