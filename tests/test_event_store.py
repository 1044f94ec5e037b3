"""Event store conformance: every implementation of `EventStore` must pass these."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from contracts import EventEnvelope, EventType, JobEventPayload, JobStatus
from observatory.adapters.sqlite_events import SQLiteEventStore
from observatory.events import event_id, producer
from observatory.ports import EventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = [
    (EventType.JOB_CREATED, JobStatus.PENDING),
    (EventType.JOB_STARTED, JobStatus.RUNNING),
    (EventType.JOB_COMPLETED, JobStatus.COMPLETED),
]


@pytest.fixture(params=["mongo", "sqlite"])
def events(request, tmp_path) -> EventStore:
    if request.param == "mongo":
        return request.getfixturevalue("real").events
    s = SQLiteEventStore(tmp_path / "events.sqlite3")
    s.setup()
    return s


def lifecycle(job_id: uuid.UUID, job_type: str = "hash") -> list[EventEnvelope]:
    return [
        EventEnvelope(
            event_type=et,
            event_id=event_id(job_id, et, v),
            occurred_at=T0 + timedelta(microseconds=v),
            producer=producer("test"),
            correlation_id="c",
            payload=JobEventPayload(job_id=job_id, job_type=job_type, status=st, version=v),
        )
        for v, (et, st) in enumerate(STEPS)
    ]


def test_events_come_back_in_order_whatever_the_arrival_order(events):
    job_id = uuid.uuid4()
    created, started, completed = lifecycle(job_id)
    for e in (completed, created, started):
        assert events.append(e)

    assert [e.event_type for e in events.for_job(job_id)] == [et for et, _ in STEPS]


def test_same_event_is_stored_once(events):
    job_id = uuid.uuid4()
    created = lifecycle(job_id)[0]

    assert events.append(created) is True
    assert events.append(created) is False
    assert events.for_job(job_id) == [created]


def test_unknown_job_has_no_events(events):
    assert events.for_job(uuid.uuid4()) == []


def test_a_jobs_events_leave_out_other_jobs_events(events):
    mine, other = lifecycle(uuid.uuid4()), lifecycle(uuid.uuid4())
    for e in (other[2], mine[2], other[0], mine[0], other[1], mine[1]):
        events.append(e)

    assert events.for_job(mine[0].payload.job_id) == mine


def test_a_batch_stores_each_new_event_once_and_reports_which_were_new(events):
    old, *new = lifecycle(uuid.uuid4())
    events.append(old)

    stored = events.append_many([old, *new, new[0]])  # one stored before, one twice in the batch

    assert stored == [False, True, True, False]
    assert [e.event_id for e in events.for_job(old.payload.job_id)] == [old.event_id, *(e.event_id for e in new)]


def test_scan_reads_every_event_once_in_batches(events):
    stored = [e for _ in range(7) for e in lifecycle(uuid.uuid4())]
    events.append_many(stored)
    batches = list(events.scan(5))
    assert all(0 < len(b) <= 5 for b in batches)
    mine = {e.event_id for e in stored}
    got = [e.event_id for b in batches for e in b if e.event_id in mine]
    assert sorted(got) == sorted(mine) and len(got) == len(set(got))  # every one, once


def test_mongo_reads_events_stored_in_either_shape(real, settings):
    """A document holds the envelope as JSON text, with the job, order and type as fields for queries; one that
    an earlier release stored with the envelope as a nested document is read as well, by job and by scan."""
    new, old = lifecycle(uuid.uuid4()), lifecycle(uuid.uuid4())
    real.events.append_many(new)
    collection = pymongo.MongoClient(settings.mongo_url)[settings.namespace]["events"]
    stored = collection.find_one({"_id": str(new[2].event_id)})
    assert stored is not None and stored["event_type"] == "job.completed"
    assert EventEnvelope.model_validate_json(stored["envelope"]) == new[2]
    collection.insert_many(
        [
            {
                "_id": str(e.event_id),
                "job_id": str(e.payload.job_id),
                "version": e.payload.version,
                "occurred_us": int(e.occurred_at.timestamp() * 1_000_000),
                "envelope": e.model_dump(mode="json"),
            }
            for e in old
        ]
    )

    assert real.events.for_job(old[0].payload.job_id) == old
    assert real.events.for_job(new[0].payload.job_id) == new
    scanned = {e.event_id: e for batch in real.events.scan(4) for e in batch}
    assert all(scanned[e.event_id] == e for e in [*old, *new])
