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


def _earlier_document(e: EventEnvelope) -> dict:
    """How an earlier release stored an event: the envelope as a nested document, in the collection `events`."""
    return {
        "_id": str(e.event_id),
        "job_id": str(e.payload.job_id),
        "version": e.payload.version,
        "occurred_us": int(e.occurred_at.timestamp() * 1_000_000),
        "envelope": e.model_dump(mode="json"),
    }


def test_mongo_keeps_the_envelope_as_json_text_and_reads_what_earlier_releases_stored(real, settings):
    """This release writes the envelope as JSON text (with the job, order and type as fields) to `event_texts`;
    an earlier release's documents (nested envelope, collection `events`) are read beside them, by job and by
    scan, an event stored by both is read once, and retention counts and removes both."""
    new, old = lifecycle(uuid.uuid4()), lifecycle(uuid.uuid4())
    rich = new[2].model_copy(
        update={
            "idempotency_key": "order-42",
            "payload": new[2].payload.model_copy(
                update={"result": {"big": 2**70, "text": "naïve \u0000 ✓", "list": [1.5, None, {"deep": True}]}}
            ),
        }
    )
    new[2] = rich
    # An upgrade in progress: the first two events of `mixed` were folded by an earlier release, the second one
    # again by this one (a redelivery), and the last by this one only.
    mixed = lifecycle(uuid.uuid4())
    real.events.append_many([*new, mixed[1], mixed[2]])
    with pymongo.MongoClient(settings.mongo_url) as client:
        db = client[settings.namespace]
        stored = db["event_texts"].find_one({"_id": str(rich.event_id)})
        assert stored is not None and stored["event_type"] == "job.completed"
        assert EventEnvelope.model_validate_json(stored["envelope"]) == rich
        db["events"].insert_many([_earlier_document(e) for e in [*old, mixed[0], mixed[1]]])

    assert real.events.for_job(rich.payload.job_id) == new
    assert real.events.for_job(old[0].payload.job_id) == old
    assert real.events.for_job(mixed[0].payload.job_id) == mixed
    scanned = [e for batch in real.events.scan(4) for e in batch]
    mine = {e.event_id: e for e in [*old, *new, *mixed]}
    assert sorted(e.event_id for e in scanned if e.event_id in mine) == sorted([*mine, mixed[1].event_id])  # twice
    assert all(e == mine[e.event_id] for e in scanned if e.event_id in mine)
    jobs = [old[0].payload.job_id, mixed[0].payload.job_id]
    assert real.events.count_jobs(jobs) == 3 + 4  # the event stored twice is two documents
    assert real.events.remove_jobs(jobs) == 7
    assert real.events.for_job(old[0].payload.job_id) == [] and real.events.for_job(mixed[0].payload.job_id) == []
