"""The aggregator actor: folds every job event into the event store and the counters."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import ray

from actors.consumer import ConsumerLoop
from observatory import backends, logs
from observatory.aggregation import EventAggregator
from observatory.errors import BackendUnavailable
from observatory.metrics import metrics
from observatory.ports import Delivery
from observatory.settings import get_settings

log = logging.getLogger(__name__)

BACKOFF_BEFORE_REQUEUE_S = 1.0


@ray.remote(num_cpus=0)
class AggregatorActor:
    def __init__(self, name: str, prefetch: int) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        self._name = name
        self._backends = backends.build(settings, pool_size=2)
        self._aggregator = EventAggregator(self._backends.events, self._backends.counters, metrics().event)
        self._loop = ConsumerLoop(self._backends.bus, "events", self._handle, prefetch, name)
        self._loop.start()

    def _handle(self, delivery: Delivery) -> None:
        # Runs on the consumer thread: event handling is short, and order within a queue is kept.
        try:
            self._aggregator.handle(delivery)
        except BackendUnavailable as e:
            log.warning("%s: %s; event requeued", self._name, e)
            time.sleep(BACKOFF_BEFORE_REQUEUE_S)
            delivery.reject(requeue=True)

    def info(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "pid": os.getpid(),
            "connected": self._loop.connected,
            "stored": self._aggregator.stored,
            "duplicates": self._aggregator.duplicates,
        }

    def stop(self) -> None:
        self._loop.stop()
        self._backends.close()
