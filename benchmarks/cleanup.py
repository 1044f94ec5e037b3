"""Drop what a real-mode run (a benchmark's or a test session's) left on the shared servers: its PostgreSQL
schema, Mongo database, Redis keys, RabbitMQ queues and exchange (each named after the run's namespace), and
Celery's queue and results."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import pika
import psycopg
import pymongo
import redis
from psycopg import sql

from observatory.adapters.rabbitmq import RabbitBus


def _redis_delete(client: redis.Redis, keys: Iterable[str | bytes]) -> None:
    batch: list[str | bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def _rabbitmq(url: str, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in exchanges:
            channel.exchange_delete(exchange)
    finally:
        connection.close()


def _attempt(steps: dict[str, Callable[[], object]]) -> list[str]:
    """Run every step; one failing does not stop the others. Returns one warning per failure."""
    warnings = []
    for what, step in steps.items():
        try:
            step()
        except Exception as e:  # noqa: BLE001 - clean-up is best effort, reported, never fatal
            warnings.append(f"clean-up of {what} failed: {e}")
    return warnings


def drop_namespace(namespace: str) -> list[str]:
    """Everything the observatory created for `namespace` on the servers named by the environment."""
    env = os.environ
    return _attempt(
        {
            "PostgreSQL": lambda: _drop_schema(env["POSTGRES_DSN"], namespace),
            "MongoDB": lambda: _drop_database(env["MONGO_URL"], namespace),
            "Redis": lambda: _drop_keys(env["REDIS_URL"], f"{namespace}:*"),
            "RabbitMQ": lambda: _drop_bus(env["AMQP_URL"], namespace),
        }
    )


def drop_celery(amqp_url: str, redis_url: str, queue: str, task_ids: Iterable[str]) -> list[str]:
    keys = [f"celery-task-meta-{task_id}" for task_id in task_ids]
    return _attempt(
        {
            "Celery's queue": lambda: _rabbitmq(amqp_url, [queue], [queue]),
            "Celery's results": lambda: _redis_delete(redis.Redis.from_url(redis_url), keys),
        }
    )


def _drop_bus(url: str, namespace: str) -> None:
    bus = RabbitBus(url, namespace)
    try:
        bus.drop()
    finally:
        bus.close()


def _drop_schema(dsn: str, namespace: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(namespace)))


def _drop_database(url: str, namespace: str) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(namespace)
    finally:
        client.close()


def _drop_keys(url: str, pattern: str) -> None:
    client = redis.Redis.from_url(url)
    _redis_delete(client, client.scan_iter(match=pattern, count=1000))
