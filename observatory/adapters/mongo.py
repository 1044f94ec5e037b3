"""The event store on MongoDB (or FerretDB): one document per event, `_id` = event_id, so never twice."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pymongo
from pymongo.errors import DuplicateKeyError, PyMongoError

from contracts import EventEnvelope
from observatory.errors import EventStoreUnavailable


def event_document(event: EventEnvelope) -> dict[str, Any]:
    """The stored shape: the envelope as JSON plus keys to find and order a job's events."""
    return {
        "_id": str(event.event_id),
        "job_id": str(event.payload.job_id),
        "version": event.payload.version,
        "occurred_us": int(event.occurred_at.timestamp() * 1_000_000),
        "envelope": event.model_dump(mode="json"),
    }


class MongoEventStore:
    def __init__(self, url: str, database: str) -> None:
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=True, uuidRepresentation="standard"
        )
        self._events = self._client[database]["events"]

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except DuplicateKeyError:
            raise
        except PyMongoError as e:
            raise EventStoreUnavailable(f"MongoDB: {e}; check MONGO_URL and that the server is up") from e

    def setup(self) -> None:
        with self._translate():
            self._events.create_index([("job_id", 1), ("version", 1), ("occurred_us", 1)], name="job_order")

    def append(self, event: EventEnvelope) -> bool:
        with self._translate():
            try:
                self._events.insert_one(event_document(event))
            except DuplicateKeyError:
                return False
        return True

    def for_job(self, job_id: UUID) -> list[EventEnvelope]:
        with self._translate():
            docs = self._events.find({"job_id": str(job_id)}).sort([("version", 1), ("occurred_us", 1)])
            return [EventEnvelope.model_validate(d["envelope"]) for d in docs]

    def ping(self) -> None:
        with self._translate():
            self._client.admin.command("ping")

    def close(self) -> None:
        self._client.close()
