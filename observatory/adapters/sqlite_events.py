"""The embedded event store: one row per event, `event_id` as the primary key, so never twice."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import UUID

from contracts import EventEnvelope
from observatory.adapters.sqlite_base import SQLiteFile, json_ids, to_us
from observatory.errors import EventStoreUnavailable

_OF_JOBS = "job_id IN (SELECT value FROM json_each(?))"  # the job ids as one JSON array


class SQLiteEventStore:
    def __init__(self, path: Path) -> None:
        self._db = SQLiteFile(path, "sqlite_events", EventStoreUnavailable)

    def setup(self) -> None:
        self._db.setup()

    def append(self, event: EventEnvelope) -> bool:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[EventEnvelope]) -> list[bool]:
        with self._db.write() as conn:  # one transaction for the batch
            return [
                conn.execute(
                    "INSERT INTO events (event_id, job_id, version, occurred_us, envelope) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    (
                        str(e.event_id),
                        str(e.payload.job_id),
                        e.payload.version,
                        to_us(e.occurred_at),
                        e.model_dump_json(),
                    ),
                ).rowcount
                == 1
                for e in events
            ]

    def scan(self, batch: int) -> Iterator[list[EventEnvelope]]:
        """One read cursor (a WAL snapshot: writers go on meanwhile)."""
        with self._db.read() as conn:
            cursor = conn.execute("SELECT envelope FROM events")
            while rows := cursor.fetchmany(batch):
                yield [EventEnvelope.model_validate(json.loads(r["envelope"])) for r in rows]

    def for_job(self, job_id: UUID) -> list[EventEnvelope]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT envelope FROM events WHERE job_id = ? ORDER BY version, occurred_us", (str(job_id),)
            ).fetchall()
        return [EventEnvelope.model_validate(json.loads(r["envelope"])) for r in rows]

    def remove_jobs(self, job_ids: Sequence[UUID]) -> int:
        """One DELETE on the (job_id, …) index."""
        with self._db.write() as conn:
            return conn.execute(f"DELETE FROM events WHERE {_OF_JOBS}", (json_ids(job_ids),)).rowcount

    def count_jobs(self, job_ids: Sequence[UUID]) -> int:
        with self._db.read() as conn:
            row = conn.execute(f"SELECT count(*) FROM events WHERE {_OF_JOBS}", (json_ids(job_ids),)).fetchone()
        return int(row[0])

    def ping(self) -> None:
        self._db.ping()

    def close(self) -> None:
        self._db.close()
