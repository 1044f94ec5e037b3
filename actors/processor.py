"""The processor actor: consumes `job.created`, runs handlers on a thread pool of `prefetch` threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from actors.consumer import ConsumerLoop
from actors.runner import RayTaskRunner
from observatory import backends, logs
from observatory.errors import BackendUnavailable
from observatory.events import producer
from observatory.jobs import default_registry
from observatory.metrics import metrics
from observatory.ports import Delivery
from observatory.processing import JobProcessor, RetryPolicy
from observatory.settings import get_settings

log = logging.getLogger(__name__)

BACKOFF_BEFORE_REQUEUE_S = 1.0  # a backend outage should not turn requeues into a hot loop


@ray.remote(num_cpus=0)
class ProcessorActor:
    def __init__(self, name: str, prefetch: int) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        self._name = name
        # The pid tells one incarnation of a processor from the next (the supervisor re-creates it under
        # the same name), so an attempt names the very process that ran it.
        worker = f"{name}:{os.getpid()}"
        self._backends = backends.build(settings, pool_size=prefetch + 2)
        self._processor = JobProcessor(
            self._backends.jobs,
            self._backends.bus,
            default_registry(),
            RayTaskRunner(),
            producer("processor", worker),
            worker=worker,
            retry=RetryPolicy(settings.retry_base_s, settings.retry_max_s),
            hooks=metrics(),
        )
        self._pool = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._handled = 0
        self._loop = ConsumerLoop(self._backends.bus, "jobs", self._dispatch, prefetch, name)
        self._loop.start()

    def _dispatch(self, delivery: Delivery) -> None:
        with self._lock:
            self._in_flight += 1
            metrics().in_flight.set(self._in_flight, tags={"processor": self._name})
        self._pool.submit(self._handle, delivery)

    def _handle(self, delivery: Delivery) -> None:
        try:
            self._processor.handle(delivery)
        except BackendUnavailable as e:
            log.warning("%s: %s; message requeued", self._name, e)
            time.sleep(BACKOFF_BEFORE_REQUEUE_S)
            delivery.reject(requeue=True)
        except Exception:
            log.exception("%s: unexpected error; message requeued", self._name)
            time.sleep(BACKOFF_BEFORE_REQUEUE_S)
            delivery.reject(requeue=True)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._handled += 1
                metrics().in_flight.set(self._in_flight, tags={"processor": self._name})

    def info(self) -> dict[str, Any]:
        return {
            "name": self._name,
            "pid": os.getpid(),
            "connected": self._loop.connected,
            "in_flight": self._in_flight,
            "handled": self._handled,
        }

    def stop(self) -> None:
        self._loop.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._backends.close()
