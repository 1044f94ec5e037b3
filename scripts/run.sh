#!/usr/bin/env bash
# Run the observatory: installs into .venv, starts the local servers, then `observatory up` (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/services.sh up
eval "$(scripts/services.sh env)"
exec .venv/bin/observatory up "$@"
