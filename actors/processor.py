"""The processor actor: consumes the work queues. Jobs of isolated types (each run a Ray task that a timeout
or a cancel can kill) come from `jobs`, one per slot, `prefetch` slots; jobs of inline types come in arrays from
`inline_batches` (and one a message from `inline`, as an older release sent them) and run in micro-batches of up
to `batch_size`."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from actors.batching import MicroBatcher, Once, handle_or_requeue, split
from actors.consumer import ConsumerLoop
from actors.runner import RayTaskRunner, here
from contracts import Job
from observatory import backends, gc_tuning, logs
from observatory.errors import BackendUnavailable
from observatory.events import producer
from observatory.jobs import default_registry
from observatory.metrics import metrics
from observatory.ports import AttemptNote, Delivery
from observatory.processing import JobProcessor, RetryPolicy
from observatory.settings import get_settings

log = logging.getLogger(__name__)

BATCH_THREADS = 2  # two micro-batches in flight: one runs while the other waits on the database or broker
DRAIN_S = 300.0  # how long a draining processor waits for the jobs in its hands (see `drain`)
DRAIN_GRACE_S = 5.0  # and a little more for its consumer threads to close


def inline_prefetch(batch_size: int) -> int:
    """Messages of inline jobs a processor holds: half a batch of them (each carries up to 32 jobs)."""
    return max(2, batch_size // 2)


@ray.remote(num_cpus=0)
class ProcessorActor:
    def __init__(
        self,
        name: str,
        prefetch: int,
        batch_size: int = 64,
        placement: dict[str, float] | None = None,
        drain_s: float = DRAIN_S,
    ) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        gc_tuning.tune()  # a hot path: see observatory.gc_tuning
        self._name = name
        # The pid tells one incarnation of a processor from the next (the supervisor re-creates it under
        # the same name), so an attempt names the very process that ran it.
        worker = f"{name}:{os.getpid()}"
        self._backends = backends.build(settings, pool_size=prefetch + BATCH_THREADS + 2)
        self._registry = default_registry()
        self._processor = JobProcessor(
            self._backends.jobs,
            self._backends.bus,
            self._registry,
            RayTaskRunner(placement, self._note),
            producer("processor", worker),
            worker=worker,
            retry=RetryPolicy(settings.retry_base_s, settings.retry_max_s),
            hooks=metrics(),
            here=here(),
        )
        self._slots = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix=f"{name}-slot")
        self._batches = MicroBatcher(self._processor.handle_batch, batch_size, BATCH_THREADS, name, self._done)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._handled = 0
        bus = self._backends.bus
        self._loops = [
            ConsumerLoop(bus, "jobs", self._to_slot, prefetch, name, drain_s),  # never more than the free slots
            # Inline jobs, up to 32 a message (topology.messages): half a batch of messages in hand, two batches'
            # worth of jobs when they carry four each (a group commit's), at most 16 (a batch request's); what a
            # processor holds the autoscaler does not see as ready. An older release's, one job a message: two
            # batches' worth.
            ConsumerLoop(
                bus, "inline_batches", self._to_batches, inline_prefetch(batch_size), f"{name}-inline-batches", drain_s
            ),
            ConsumerLoop(bus, "inline", self._to_batch, 2 * batch_size, f"{name}-inline", drain_s),
        ]
        self._drain_s = drain_s
        for loop in self._loops:
            loop.start()

    def _note(self, job: Job, note: AttemptNote) -> None:
        """Record where a job's handler started, or why it waits (best effort: the run goes on regardless)."""
        try:
            self._backends.jobs.note_attempt(job.id, job.attempts, note)
        except BackendUnavailable as e:
            log.warning("could not record attempt %s of job %s: %s", job.attempts, job.id, e)

    def _to_slot(self, delivery: Delivery) -> None:
        self._count(+1)
        self._slots.submit(self._one, Once(delivery))

    def _to_batch(self, delivery: Delivery) -> None:
        self._count(+1)
        self._batches.put(delivery)

    def _to_batches(self, delivery: Delivery) -> None:
        parts = split(delivery)
        self._count(+len(parts))
        self._batches.put_many(parts)

    def _one(self, delivery: Once) -> None:
        handle_or_requeue(self._processor.handle_batch, [delivery])
        self._done(1)

    def _done(self, n: int) -> None:
        self._count(-n, handled=n)

    def _count(self, delta: int, handled: int = 0) -> None:
        with self._lock:
            self._in_flight += delta
            self._handled += handled
            metrics().in_flight.set(self._in_flight, tags={"processor": self._name})

    def info(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "connected": all(loop.connected for loop in self._loops),
            "in_flight": self._in_flight,
            "handled": self._handled,
        }

    def drain(self) -> int:
        """Scale-down: take no more jobs, finish those in hand (commit, publish, ack), then let go of the
        backends; the supervisor removes the actor after this returns. Jobs still unsettled after `drain_s`
        (e.g. waiting for resources) go back to the queue when the connections close, for another processor.
        Returns how many jobs this processor handled in its life."""
        for loop in self._loops:
            loop.request_stop()
        for loop in self._loops:
            loop.join(self._drain_s + DRAIN_GRACE_S)
        self._batches.stop()
        self._slots.shutdown(wait=False, cancel_futures=True)
        self._backends.close()
        return self._handled

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        self._batches.stop()
        self._slots.shutdown(wait=True, cancel_futures=True)
        self._backends.close()
