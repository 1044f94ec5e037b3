"""The aggregator actor: folds every job event into the event store and the counters."""

from __future__ import annotations

import os
from typing import Any

import ray

from actors.batching import MicroBatcher
from actors.consumer import ConsumerLoop
from observatory import backends, gc_tuning, logs
from observatory.aggregation import EventAggregator
from observatory.metrics import metrics
from observatory.settings import get_settings
from observatory.topology import EVENT_QUEUES


@ray.remote(num_cpus=0)
class AggregatorActor:
    def __init__(self, name: str, prefetch: int, fill_s: float = 0.0) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        gc_tuning.tune()  # a hot path: see observatory.gc_tuning
        self._name = name
        self._backends = backends.build(settings, pool_size=2)
        jobs = self._backends.jobs
        self._aggregator = EventAggregator(
            self._backends.events,
            self._backends.counters,
            metrics().event,
            lambda reason, message: jobs.dead_letter(None, None, reason, message),
        )
        # One batch thread: events are folded in the order they arrive (the counters converge either way). Nobody
        # waits on a fold, so a batch may gather for `fill_s`: one write per batch costs less than per message.
        self._batches = MicroBatcher(self._aggregator.handle_batch, prefetch, 1, name, fill_s=fill_s)
        # Single events, and messages of several (up to 32 inline jobs' work, or a processor's micro-batch of
        # events, up to its batch_size): half a batch of those in hand, so the broker's prefetch limit does not leave
        # a fill window waiting for messages it cannot deliver (with 16 in hand, a 50 ms window folded at most ~270
        # such messages a second). A fold is then at most event_prefetch / 2 × batch_size events: ~4 000 with
        # serve_app/config.yaml's sizes (128 and 64).
        self._loops = [
            ConsumerLoop(self._backends.bus, queue, self._batches.put, n, name)
            for queue, n in zip(EVENT_QUEUES, (2 * prefetch, max(2, prefetch // 2)), strict=True)
        ]
        for loop in self._loops:
            loop.start()

    def info(self) -> dict[str, Any]:
        stored, duplicates = self._aggregator.stored, self._aggregator.duplicates
        return {
            "name": self._name,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "connected": all(loop.connected for loop in self._loops),
            "stored": stored,
            "duplicates": duplicates,
            "handled": stored + duplicates,  # events folded in (unreadable ones, dead-lettered, are not counted)
        }

    def stop(self) -> None:
        for loop in self._loops:
            loop.request_stop()
        for loop in self._loops:
            loop.join(10.0)
        self._batches.stop()
        self._backends.close()
