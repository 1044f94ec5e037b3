#!/usr/bin/env bash
# The whole test suite: installs into .venv, starts the real servers, lints, runs pytest, stops the servers.
# Extra arguments go to pytest. OBSERVATORY_KEEP_SERVICES=1 leaves the servers running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/browser.sh >/dev/null  # chromium + chromedriver for the web dashboard's browser tests
scripts/k8s.sh build  # the control plane for the KubeRay tests: ~20 min the first time, then cached
scripts/services.sh up --observability
if [ "${OBSERVATORY_KEEP_SERVICES:-0}" != 1 ]; then
  trap 'scripts/services.sh down' EXIT
fi
eval "$(scripts/services.sh env)"
.venv/bin/ruff check .
.venv/bin/python -m contracts.export --check
.venv/bin/python -m kuberay.render --check
.venv/bin/python -m pytest "$@"
