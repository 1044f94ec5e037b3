"""The Celery side of the comparison: one no-op task on the observatory's RabbitMQ (a queue of its own) with
results in the same Redis (database 1). The worker finds `app` here (`celery -A benchmarks.celery_app`) and
reads its broker, backend and queue from the environment; the benchmark's client calls `create_app`."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from celery import Celery

BROKER_ENV = "BENCH_CELERY_BROKER"
BACKEND_ENV = "BENCH_CELERY_BACKEND"
QUEUE_ENV = "BENCH_CELERY_QUEUE"
NOOP = "bench.noop"
RESULTS_DB = 1  # the observatory uses database 0


def results_url(redis_url: str) -> str:
    """The same Redis server, database 1."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{RESULTS_DB}"))


def noop() -> None:
    """Does nothing: the benchmark measures the queue, not the work."""


def create_app(broker: str, backend: str, queue: str) -> Celery:
    app = Celery("bench", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,  # also names its direct exchange and routing key
        task_acks_late=True,  # ack after the task ran, like the observatory's processors
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=32,  # ≥ the 16 submitting threads, so none waits for a connection
        result_expires=3600,
        timezone="UTC",
    )
    app.task(name=NOOP)(noop)
    return app


app = create_app(
    os.environ.get(BROKER_ENV, "amqp://guest:guest@127.0.0.1:5672//"),
    os.environ.get(BACKEND_ENV, results_url("redis://127.0.0.1:6379/0")),
    os.environ.get(QUEUE_ENV, "bench_celery"),
)
