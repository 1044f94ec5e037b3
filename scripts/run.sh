#!/usr/bin/env bash
# Run the observatory: installs into .venv, then `observatory up` (Ctrl-C stops). With no AMQP_URL,
# POSTGRES_DSN, MONGO_URL or REDIS_URL set it needs no services (embedded backends under
# OBSERVATORY_DATA_DIR); each variable that is set switches that backend to the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/observatory up "$@"
