#!/usr/bin/env bash
# The benchmark: the observatory (real backends and embedded) and Celery side by side on this machine, on the
# same RabbitMQ and Redis, printed as one table (also written to benchmarks/results/latest.md). Installs into
# .venv with the `bench` extra, starts the local servers (and leaves them running), then runs
# `python -m benchmarks.run`; extra arguments go to it (--quick, --jobs N, --modes real, --skip-celery, …).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
stamp=.venv/.bench-installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "[bench] installing the bench extra (Celery, psutil) into .venv" >&2
  .venv/bin/python -m pip install -q -e ".[bench]"
  rm -f .venv/.bench-installed-* && touch "$stamp"
fi
scripts/services.sh up
eval "$(scripts/services.sh env)"
exec .venv/bin/python -m benchmarks.run "$@"
