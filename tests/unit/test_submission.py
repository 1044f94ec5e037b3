"""SubmissionService and the sweeper, against the real embedded job store and a recording bus."""

from __future__ import annotations

import logging
import uuid

import pytest

from contracts import EventType, JobStatus, JobSubmission
from observatory.errors import InvalidSubmission, JobConflict, JobNotFound
from observatory.events import event_id
from observatory.submission import SubmissionService, sweep
from observatory.views import stats_differences
from tests.unit.fakes import SOURCE, RecordingBus, new_job, registry, stored_job


def service(jobs, bus) -> SubmissionService:
    return SubmissionService(jobs, bus, registry(), SOURCE)


def dead_lettered_job(jobs):
    job = stored_job(jobs, max_attempts=1)
    jobs.start(job.id, "w", rerun=False)
    return jobs.fail(job.id, "boom", retry=True)


# --- validate ---------------------------------------------------------------------------------------------


def test_validate_fills_in_payload_defaults(jobs, bus):
    [new] = service(jobs, bus).validate([JobSubmission(type="echo", payload={"n": 3})], batch=False)

    assert (new.type, new.payload) == ("echo", {"n": 3, "label": "x"})


def test_validate_keeps_key_and_attempts_and_leaves_correlation_to_submit(jobs, bus):
    sub = JobSubmission(type="echo", payload={"n": 3}, idempotency_key="k1", max_attempts=7)

    [new] = service(jobs, bus).validate([sub], batch=False)

    assert (new.idempotency_key, new.max_attempts, new.correlation_id) == ("k1", 7, "")


def test_validate_gives_each_job_a_fresh_id(jobs, bus):
    subs = [JobSubmission(type="echo", payload={"n": 1})] * 2

    a, b = service(jobs, bus).validate(subs, batch=True)

    assert isinstance(a.id, uuid.UUID) and a.id != b.id


def test_validate_takes_the_default_timeout_of_the_job_type(jobs, bus):
    [new] = service(jobs, bus).validate([JobSubmission(type="echo", payload={"n": 1})], batch=False)

    assert new.timeout_s == 42.0


def test_validate_keeps_an_explicit_timeout(jobs, bus):
    [new] = service(jobs, bus).validate([JobSubmission(type="echo", payload={"n": 1}, timeout_s=5)], batch=False)

    assert new.timeout_s == 5.0


def test_single_submission_error_is_located_in_the_body(jobs, bus):
    with pytest.raises(InvalidSubmission) as e:
        service(jobs, bus).validate([JobSubmission(type="nope")], batch=False)

    assert [loc for loc, _ in e.value.details] == [["body", "type"]]


def test_batch_submission_error_is_located_at_its_index(jobs, bus):
    subs = [JobSubmission(type="echo", payload={"n": 1}), JobSubmission(type="echo", payload={"n": "x"})]

    with pytest.raises(InvalidSubmission) as e:
        service(jobs, bus).validate(subs, batch=True)

    assert [loc for loc, _ in e.value.details] == [["body", "jobs", 1, "payload", "n"]]


def test_validate_stores_nothing(jobs, bus):
    service(jobs, bus).validate([JobSubmission(type="echo", payload={"n": 1})], batch=False)

    assert jobs.list(None, None, 10, None).items == []


# --- submit -----------------------------------------------------------------------------------------------


def test_submit_stamps_the_given_correlation_id_on_every_job(jobs, bus):
    accepted = service(jobs, bus).submit([new_job(), new_job()], "corr-42")

    assert [a.body.correlation_id for a in accepted] == ["corr-42", "corr-42"]
    assert {jobs.get(a.body.job_id).correlation_id for a in accepted} == {"corr-42"}


def test_submit_generates_one_correlation_id_for_the_batch(jobs, bus):
    accepted = service(jobs, bus).submit([new_job(), new_job()], None)

    ids = {a.body.correlation_id for a in accepted}
    assert len(ids) == 1
    uuid.UUID(ids.pop())


def test_submit_generates_a_new_correlation_id_per_request(jobs, bus):
    svc = service(jobs, bus)

    [a] = svc.submit([new_job()], None)
    [b] = svc.submit([new_job()], None)

    assert a.body.correlation_id != b.body.correlation_id


def test_submit_accepts_jobs_as_pending_with_their_created_event_id(jobs, bus):
    new = new_job()

    [accepted] = service(jobs, bus).submit([new], "c")

    assert accepted.created
    assert accepted.body.job_id == new.id
    assert accepted.body.status is JobStatus.PENDING
    assert accepted.body.event_id == event_id(new.id, EventType.JOB_CREATED, 0)


def test_submit_publishes_job_created_for_each_job(jobs, bus):
    a, b = new_job(), new_job()

    service(jobs, bus).submit([a, b], "c")

    assert [(e.event_type, e.payload.job_id) for e in bus.published] == [
        (EventType.JOB_CREATED, a.id),
        (EventType.JOB_CREATED, b.id),
    ]
    assert [e.producer for e in bus.published] == [SOURCE, SOURCE]


def test_submit_marks_published_jobs_so_the_sweeper_skips_them(jobs, bus):
    service(jobs, bus).submit([new_job(), new_job()], "c")

    assert jobs.unpublished(0, 10) == []


def test_repeated_idempotency_key_returns_the_earlier_job_and_publishes_nothing(jobs, bus):
    svc = service(jobs, bus)
    [first] = svc.submit([new_job(key="k")], "c")
    bus.published.clear()

    [again] = svc.submit([new_job(key="k")], "other")

    assert not again.created
    assert again.body.job_id == first.body.job_id
    assert again.body.correlation_id == "c"
    assert bus.published == []


def test_bus_down_leaves_the_jobs_for_the_sweeper(jobs, caplog):
    bus = RecordingBus(fail_after=0)
    a, b = new_job(), new_job()

    with caplog.at_level(logging.WARNING, logger="observatory.submission"):
        accepted = service(jobs, bus).submit([a, b], "c")

    assert [x.body.job_id for x in accepted] == [a.id, b.id]
    assert all(x.created for x in accepted)
    assert {j.id for j in jobs.unpublished(0, 10)} == {a.id, b.id}
    assert "2 job(s) left for the sweeper" in caplog.text


def test_bus_failing_midway_leaves_every_job_of_the_publish_for_the_sweeper(jobs, caplog):
    # A batch is published as one broker transaction: cut short, none of it counts as published.
    bus = RecordingBus(fail_after=1)
    a, b, c = new_job(), new_job(), new_job()

    with caplog.at_level(logging.WARNING, logger="observatory.submission"):
        accepted = service(jobs, bus).submit([a, b, c], "c")

    assert len(accepted) == 3
    assert [e.payload.job_id for e in bus.published] == [a.id]
    assert {j.id for j in jobs.unpublished(0, 10)} == {a.id, b.id, c.id}
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (
            "observatory.submission",
            "publish failed, 3 job(s) left for the sweeper: message bus unavailable: broker down (test)",
        )
    ]


# --- cancel and requeue -----------------------------------------------------------------------------------


def test_cancel_cancels_the_job_and_publishes_job_cancelled(jobs, bus):
    job = stored_job(jobs)

    done = service(jobs, bus).cancel(job.id)

    assert done.status is JobStatus.CANCELLED
    assert jobs.get(job.id).status is JobStatus.CANCELLED
    assert [(e.event_type, e.payload.job_id) for e in bus.published] == [(EventType.JOB_CANCELLED, job.id)]


def test_cancel_with_the_bus_down_is_still_answered_with_the_cancelled_job(jobs, caplog):
    # Committed is committed: a processor publishes job.cancelled when it meets the job's message.
    job = stored_job(jobs)

    with caplog.at_level(logging.WARNING, logger="observatory.submission"):
        done = service(jobs, RecordingBus(fail_after=0)).cancel(job.id)

    assert done.status is JobStatus.CANCELLED
    assert jobs.get(job.id).status is JobStatus.CANCELLED
    assert f"job {job.id} cancelled; its event is left for the processor" in caplog.text


def test_cancel_of_an_unknown_job_is_not_found(jobs, bus):
    unknown = uuid.uuid4()

    with pytest.raises(JobNotFound) as e:
        service(jobs, bus).cancel(unknown)

    assert str(e.value) == f"job {unknown} not found"
    assert bus.published == []


def test_cancel_of_a_final_job_is_a_conflict_naming_its_state(jobs, bus):
    job = stored_job(jobs)
    svc = service(jobs, bus)
    svc.cancel(job.id)

    with pytest.raises(JobConflict) as e:
        svc.cancel(job.id)

    assert str(e.value) == f"job {job.id} is CANCELLED: only PENDING, RETRYING or RUNNING jobs can be cancelled"


def test_requeue_makes_a_dead_lettered_job_pending_and_publishes_it(jobs, bus):
    job = dead_lettered_job(jobs)

    done = service(jobs, bus).requeue(job.id)

    assert done.status is JobStatus.PENDING
    assert [(e.event_type, e.payload.job_id) for e in bus.published] == [(EventType.JOB_REQUEUED, job.id)]
    assert jobs.unpublished(0, 10) == []


def test_requeue_with_the_bus_down_leaves_the_job_for_the_sweeper(jobs):
    job = dead_lettered_job(jobs)

    service(jobs, RecordingBus(fail_after=0)).requeue(job.id)

    assert [j.id for j in jobs.unpublished(0, 10)] == [job.id]


def test_requeue_of_an_unknown_job_is_not_found(jobs, bus):
    with pytest.raises(JobNotFound):
        service(jobs, bus).requeue(uuid.uuid4())


def test_requeue_of_a_pending_job_is_a_conflict_naming_its_state(jobs, bus):
    job = stored_job(jobs)

    with pytest.raises(JobConflict) as e:
        service(jobs, bus).requeue(job.id)

    assert str(e.value) == f"job {job.id} is PENDING: only DEAD_LETTERED jobs can be requeued"
    assert bus.published == []


# --- sweep ------------------------------------------------------------------------------------------------


def unpublished_jobs(jobs, n: int) -> list[uuid.UUID]:
    return [c.job.id for c in jobs.create([new_job() for _ in range(n)])]


def test_sweep_leaves_jobs_younger_than_the_threshold(jobs, bus):
    unpublished_jobs(jobs, 1)

    n = sweep(jobs, bus, SOURCE, older_than_s=60)

    assert n == 0
    assert bus.published == []


def test_sweep_publishes_unpublished_jobs_older_than_the_threshold(jobs, bus):
    ids = unpublished_jobs(jobs, 2)

    n = sweep(jobs, bus, SOURCE, older_than_s=0)

    assert n == 2
    assert [(e.event_type, e.payload.job_id) for e in bus.published] == [(EventType.JOB_CREATED, i) for i in ids]
    assert [e.producer for e in bus.published] == [SOURCE, SOURCE]


def test_sweep_marks_what_it_published(jobs, bus):
    unpublished_jobs(jobs, 2)
    sweep(jobs, bus, SOURCE, older_than_s=0)
    bus.published.clear()

    n = sweep(jobs, bus, SOURCE, older_than_s=0)

    assert n == 0
    assert bus.published == []


def test_a_job_accepted_and_cancelled_while_the_broker_was_down_is_swept_as_its_events(jobs, counters):
    """No processor ever meets such a job (its work message was never sent, its cancel not either): the sweeper
    publishes the events it would have had, with the ids they would have had, so the stats count it."""
    down = RecordingBus(fail_after=0)
    [accepted] = service(jobs, down).submit([new_job()], "c")
    cancelled = service(jobs, down).cancel(accepted.body.job_id)
    bus = RecordingBus()

    assert sweep(jobs, bus, SOURCE, older_than_s=0) == 1

    created, cancel = bus.published
    assert (created.event_type, created.payload.version, created.payload.status) == (
        EventType.JOB_CREATED,
        0,
        JobStatus.PENDING,
    )
    assert created.event_id == accepted.body.event_id  # what the submission would have sent
    assert created.occurred_at == cancelled.created_at
    assert (cancel.event_type, cancel.payload.version) == (EventType.JOB_CANCELLED, cancelled.version)
    counters.apply_many(bus.published)
    assert stats_differences(counters.stats(), jobs.counts()) == []
    bus.published.clear()
    assert sweep(jobs, bus, SOURCE, older_than_s=0) == 0  # marked: once
    assert bus.published == []


def test_a_job_cancelled_after_a_retry_is_swept_as_its_current_state_only(jobs, counters):
    """Its earlier events cannot be told from the row (which transitions came between): only the truthful
    ones go out, the cancel's, and the job is counted."""
    job = stored_job(jobs)  # its work message published, the mark lost (the job store was down then)
    jobs.start(job.id, "w", rerun=False)
    jobs.fail(job.id, "boom", retry=True)
    cancelled = service(jobs, RecordingBus(fail_after=0)).cancel(job.id)
    bus = RecordingBus()

    sweep(jobs, bus, SOURCE, older_than_s=0)

    assert [(e.event_type, e.payload.version) for e in bus.published] == [(EventType.JOB_CANCELLED, cancelled.version)]


def test_sweep_publishes_at_most_limit_jobs(jobs, bus):
    unpublished_jobs(jobs, 3)

    first = sweep(jobs, bus, SOURCE, older_than_s=0, limit=2)
    second = sweep(jobs, bus, SOURCE, older_than_s=0, limit=2)

    assert (first, second) == (2, 1)
    assert len(bus.published) == 3


def test_sweep_publishes_at_most_500_jobs_by_default(jobs, bus):
    unpublished_jobs(jobs, 501)

    n = sweep(jobs, bus, SOURCE, older_than_s=0)

    assert n == 500
    assert len(jobs.unpublished(0, 1000)) == 1
