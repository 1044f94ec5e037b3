"""The event store on MongoDB (or FerretDB): one document per event, `_id` = event_id, so never twice.

A document holds the keys that find and order a job's events (`job_id`, `version`, `occurred_us`), the event's
type, and the envelope itself as its JSON text (as the embedded store keeps it), in the collection
`event_texts`. FerretDB turns each field of a document into typed JSON in PostgreSQL, and a nested envelope of
~20 fields cost it and its PostgreSQL 2.5 times the CPU of one string (measured: ~195 µs against ~80 µs per
event).

Earlier releases stored the envelope as a nested document in the collection `events`. That collection is read,
and cleared by retention, but never written: a read model of an earlier release (during a zero-downtime
upgrade, or after a rollback) reads only `events`, so it never meets a document it cannot read; it misses
the events stored since, as it would miss any it never received. An event stored in both (one release folded
it, then its redelivery reached the other) is read once.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

import pymongo
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from contracts import EventEnvelope
from observatory.errors import EventStoreUnavailable

DUPLICATE_KEY = 11000  # MongoDB's error code for a unique index violation (here: an event stored before)
COLLECTION = "event_texts"
EARLIER = "events"  # where earlier releases stored their events, the envelope as a nested document
JOB_ORDER = [("job_id", 1), ("version", 1), ("occurred_us", 1)]


def event_document(event: EventEnvelope) -> dict[str, Any]:
    """The stored shape: keys to find and order a job's events, its type, and the envelope's JSON text."""
    return {
        "_id": str(event.event_id),
        "job_id": str(event.payload.job_id),
        "version": event.payload.version,
        "occurred_us": int(event.occurred_at.timestamp() * 1_000_000),
        "event_type": event.event_type.value,
        "envelope": event.model_dump_json(),
    }


def read_envelope(doc: dict[str, Any]) -> EventEnvelope:
    """A stored document's event: the envelope's JSON text, or the nested document of an earlier release."""
    envelope = doc["envelope"]
    if isinstance(envelope, str):
        return EventEnvelope.model_validate_json(envelope)
    return EventEnvelope.model_validate(envelope)


def _of_jobs(job_ids: Sequence[UUID]) -> dict[str, Any]:
    """The filter that selects these jobs' documents (on the job_order index)."""
    return {"job_id": {"$in": [str(i) for i in job_ids]}}


class MongoEventStore:
    def __init__(self, url: str, database: str) -> None:
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=True, uuidRepresentation="standard"
        )
        self._events = self._client[database][COLLECTION]
        self._earlier = self._client[database][EARLIER]

    @property
    def _both(self) -> tuple[Collection[dict[str, Any]], ...]:
        return (self._events, self._earlier)

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except DuplicateKeyError:
            raise
        except PyMongoError as e:
            raise EventStoreUnavailable(f"MongoDB: {e}; check MONGO_URL and that the server is up") from e

    def setup(self) -> None:
        """The index that finds a job's events in order (an earlier release's collection has its own already)."""
        with self._translate():
            self._events.create_index(JOB_ORDER, name="job_order")

    def append(self, event: EventEnvelope) -> bool:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        """One unordered bulk insert: a duplicate `_id` fails only its own document, never the rest."""
        if not events:
            return []
        with self._translate():
            try:
                self._events.insert_many([event_document(e) for e in events], ordered=False)
            except BulkWriteError as e:
                errors = e.details.get("writeErrors", [])
                if any(err.get("code") != DUPLICATE_KEY for err in errors) or e.details.get("writeConcernErrors"):
                    raise EventStoreUnavailable(f"MongoDB: {e.details}") from e
                duplicates = {err["index"] for err in errors}
                return [i not in duplicates for i in range(len(events))]
        return [True] * len(events)

    def scan(self, batch: int) -> Iterator[list[EventEnvelope]]:
        """One cursor per collection in natural order (no sort: FerretDB would sort it all first). An event
        stored in both collections comes twice; the replay counts each job under its highest version, once."""
        with self._translate():
            docs = itertools.chain.from_iterable(c.find({}, {"envelope": 1}, batch_size=batch) for c in self._both)
            page: list[EventEnvelope] = []
            for doc in docs:
                page.append(read_envelope(doc))
                if len(page) == batch:
                    yield page
                    page = []
            if page:
                yield page

    def for_job(self, job_id: UUID) -> list[EventEnvelope]:
        with self._translate():
            found: dict[str, dict[str, Any]] = {}
            for collection in reversed(self._both):  # this release's document wins over an earlier one's
                found.update((d["_id"], d) for d in collection.find({"job_id": str(job_id)}))
            docs = sorted(found.values(), key=lambda d: (d["version"], d["occurred_us"]))
            return [read_envelope(d) for d in docs]

    def remove_jobs(self, job_ids: Sequence[UUID]) -> int:
        """One delete_many per collection on the job_order index. No TTL index instead: see observatory.retention."""
        if not job_ids:
            return 0
        with self._translate():
            return sum(c.delete_many(_of_jobs(job_ids)).deleted_count for c in self._both)

    def count_jobs(self, job_ids: Sequence[UUID]) -> int:
        if not job_ids:
            return 0
        with self._translate():
            return sum(c.count_documents(_of_jobs(job_ids)) for c in self._both)

    def ping(self) -> None:
        with self._translate():
            self._client.admin.command("ping")

    def close(self) -> None:
        self._client.close()
