"""Running one job message: the processor's logic as a plain class, testable without Ray.

Order matters for the guarantees: the outcome is committed to the job store, then its event is
published, and only then is the message acked. A crash anywhere before the ack means redelivery.
"""

from __future__ import annotations

import logging
import traceback

from pydantic import ValidationError

from contracts import EventEnvelope, Job, JobStatus, Producer
from observatory.errors import JobFailed
from observatory.events import job_event
from observatory.jobs import Registry
from observatory.ports import Bus, Delivery, JobStore

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


class JobProcessor:
    def __init__(self, jobs: JobStore, bus: Bus, registry: Registry, source: Producer, worker: str) -> None:
        self._jobs, self._bus, self._registry = jobs, bus, registry
        self._source, self._worker = source, worker

    def handle(self, delivery: Delivery) -> None:
        try:
            event = EventEnvelope.model_validate_json(delivery.body)
        except ValidationError as e:
            # Requeueing a message that can never parse would loop forever: drop it, loudly.
            log.error("unprocessable message rejected: %s", e.errors(include_url=False)[:3])
            delivery.reject(requeue=False)
            return
        job_id = event.payload.job_id
        # A redelivered message means its previous consumer died mid-job, so a RUNNING job may run again;
        # a plain duplicate (e.g. re-published by the sweeper) must not start a second run.
        job = self._jobs.start(job_id, self._worker, rerun=delivery.redelivered)
        if job is None:
            self._settle_existing(job_id)
            delivery.ack()
            return
        self._bus.publish(job_event(job, self._source))
        finished = self._run(job)
        if finished is not None:
            self._bus.publish(job_event(finished, self._source))
        delivery.ack()

    def _run(self, job: Job) -> Job | None:
        try:
            result = self._registry.run(job.type, job.payload)
        except JobFailed as e:
            return self._jobs.finish(job.id, JobStatus.FAILED, None, str(e)[:MAX_ERROR_CHARS])
        except Exception as e:  # a handler bug fails the job, it must not kill the processor
            detail = "".join(traceback.format_exception_only(e)).strip()
            return self._jobs.finish(job.id, JobStatus.FAILED, None, detail[:MAX_ERROR_CHARS])
        return self._jobs.finish(job.id, JobStatus.COMPLETED, result, None)

    def _settle_existing(self, job_id: object) -> None:
        """A final job's event may have been lost in a crash after commit: publish it again (same id)."""
        job = self._jobs.get(job_id)  # type: ignore[arg-type]
        if job is None:
            log.warning("message for unknown job %s dropped", job_id)
        elif job.status.is_final:
            self._bus.publish(job_event(job, self._source))
