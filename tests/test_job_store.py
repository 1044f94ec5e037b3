"""Job store conformance: every implementation of `JobStore` must pass these."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from contracts import DeadLetter, JobStatus, Resources
from observatory.adapters.postgres import PostgresJobStore
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from observatory.errors import InvalidSubmission
from observatory.ports import AttemptNote, Finish, JobStore, NewJob, RanOn
from tests.helpers import wait_for


@pytest.fixture(params=["postgres", "sqlite"])
def store(request, tmp_path) -> JobStore:
    if request.param == "postgres":
        return request.getfixturevalue("real").jobs
    s = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    s.setup()
    return s


def new(job_type: str = "hash", key: str | None = None, max_attempts: int = 3) -> NewJob:
    return NewJob(uuid.uuid4(), job_type, {"data": "x"}, "corr-1", key, max_attempts, 30.0)


def test_created_job_is_pending_and_readable(store):
    [c] = store.create([new()])

    got = store.get(c.job.id)

    assert c.created and got is not None
    assert (got.status, got.version, got.attempts, got.correlation_id) == (JobStatus.PENDING, 0, 0, "corr-1")


def test_get_many_reads_the_jobs_that_exist_by_id(store):
    a, b = (c.job for c in store.create([new(), new()]))
    store.start(b.id, "w1", rerun=False)

    got = store.get_many([a.id, b.id, uuid.uuid4()])

    assert {i: (j.status, j.version) for i, j in got.items()} == {
        a.id: (JobStatus.PENDING, 0),
        b.id: (JobStatus.RUNNING, 1),
    }
    assert store.get_many([]) == {}


def test_repeated_idempotency_key_returns_the_first_job(store):
    key = f"k-{uuid.uuid4()}"
    [first] = store.create([new(key=key)])

    [second] = store.create([new(key=key)])

    assert not second.created
    assert second.job.id == first.job.id


def test_start_then_finish_moves_through_the_lifecycle(store):
    [c] = store.create([new()])

    running = store.start(c.job.id, "w1", rerun=False)
    done = store.complete(c.job.id, {"ok": 1})

    assert running is not None and running.status is JobStatus.RUNNING and running.attempts == 1
    assert done is not None and done.status is JobStatus.COMPLETED and done.result == {"ok": 1}
    assert done.version == 2 and done.finished_at >= done.started_at >= done.created_at


def test_running_job_starts_again_only_on_rerun(store):
    [c] = store.create([new()])
    store.start(c.job.id, "w1", rerun=False)

    assert store.start(c.job.id, "w2", rerun=False) is None
    again = store.start(c.job.id, "w2", rerun=True)
    assert again is not None and again.attempts == 2


def test_final_job_never_goes_back_to_running(store):
    [c] = store.create([new()])
    store.start(c.job.id, "w1", rerun=False)
    store.fail(c.job.id, "boom", retry=False)

    assert store.start(c.job.id, "w1", rerun=True) is None
    assert store.complete(c.job.id, 1) is None
    assert store.get(c.job.id).status is JobStatus.FAILED


def test_list_pages_newest_first_with_a_cursor(store):
    job_type = f"page{uuid.uuid4().hex[:6]}"
    ids = [c.job.id for c in (store.create([new(job_type)])[0] for _ in range(5))]

    first = store.list(None, job_type, 2, None)
    second = store.list(None, job_type, 2, first.next_cursor)
    third = store.list(None, job_type, 2, second.next_cursor)

    seen = [j.id for j in first.items + second.items + third.items]
    assert seen == list(reversed(ids))
    assert third.next_cursor is None


def test_list_filters_by_status(store):
    job_type = f"filt{uuid.uuid4().hex[:6]}"
    a, b = (store.create([new(job_type)])[0].job for _ in range(2))
    store.start(a.id, "w", rerun=False)

    page = store.list(JobStatus.RUNNING, job_type, 10, None)

    assert [j.id for j in page.items] == [a.id]


def test_find_by_id_correlation_id_or_idempotency_key(store):
    corr = f"corr-{uuid.uuid4().hex[:8]}"
    key = f"key-{uuid.uuid4().hex[:8]}"
    a = store.create([NewJob(uuid.uuid4(), "hash", {}, corr, None, 3, 30.0)])[0].job
    b = store.create([NewJob(uuid.uuid4(), "hash", {}, corr, key, 3, 30.0)])[0].job

    assert [j.id for j in store.find(corr, 10)] == [b.id, a.id]
    assert [j.id for j in store.find(key, 10)] == [b.id]
    assert [j.id for j in store.find(str(a.id), 10)] == [a.id]
    assert [j.id for j in store.find(corr, 1)] == [b.id]
    assert store.find("nothing-like-it", 10) == [] and store.find("", 10) == []


def test_garbage_cursor_is_a_client_error(store):
    with pytest.raises(InvalidSubmission):
        store.list(None, None, 10, "not-a-cursor")


def test_unpublished_lists_only_unconfirmed_pending_or_cancelled_jobs(store):
    [a], [b], [c], [d], [r] = (store.create([new()]) for _ in range(5))
    store.mark_published([a.job.id, d.job.id])
    store.cancel(c.job.id)  # cancelled before its publish was confirmed: the sweeper's too
    store.cancel(d.job.id)
    store.start(r.job.id, "w", rerun=False)  # published, its mark lost: a processor has it

    stale = {j.id for j in store.unpublished(0.0, 1000)}

    assert b.job.id in stale and c.job.id in stale
    assert not stale & {a.job.id, d.job.id, r.job.id}


def test_a_late_first_run_mark_does_not_hide_a_requeued_job_from_the_sweeper(store):
    [fresh], [c] = store.create([new()]), store.create([new(max_attempts=1)])
    store.mark_published([c.job.id])
    store.start(c.job.id, "w", rerun=False)
    store.fail(c.job.id, "boom", retry=True)
    store.requeue(c.job.id)  # PENDING again, unpublished until its new publish is marked

    store.mark_published([fresh.job.id, c.job.id], first_run_only=True)  # the submission's mark, arriving late

    stale = {j.id for j in store.unpublished(0.0, 1000)}
    assert c.job.id in stale and fresh.job.id not in stale
    store.mark_published([c.job.id])  # the requeue's own mark
    assert c.job.id not in {j.id for j in store.unpublished(0.0, 1000)}


def test_a_late_mark_skips_a_claimed_job_so_the_sweeper_still_covers_its_cancel(store):
    # The gateway marks its jobs late (observatory.late_marks): a processor may have claimed one by then. The
    # mark must leave it alone, so a cancel whose publish fails later is still the sweeper's to publish.
    [claimed], [waiting] = store.create([new()]), store.create([new()])
    store.start(claimed.job.id, "w", rerun=False)

    store.mark_published([claimed.job.id, waiting.job.id], first_run_only=True)
    store.cancel(claimed.job.id)
    store.cancel(waiting.job.id)

    stale = {j.id for j in store.unpublished(0.0, 1000)}
    assert claimed.job.id in stale and waiting.job.id not in stale


def test_counts_group_by_type_and_status(store):
    job_type = f"cnt{uuid.uuid4().hex[:6]}"
    [a], [_b] = store.create([new(job_type)]), store.create([new(job_type)])
    store.start(a.job.id, "w", rerun=False)

    counts, last = store.counts()

    assert counts[(job_type, JobStatus.RUNNING)] == 1
    assert counts[(job_type, JobStatus.PENDING)] == 1
    assert last is not None


def test_failed_attempt_retries_until_attempts_run_out_then_dead_letters(store):
    [c] = store.create([new(max_attempts=2)])

    store.start(c.job.id, "w1", rerun=False)
    retrying = store.fail(c.job.id, "first", retry=True)
    store.start(c.job.id, "w2", rerun=False)
    dead = store.fail(c.job.id, "second", retry=True)

    assert retrying.status is JobStatus.RETRYING and retrying.version == 3  # started 1, failed 2, retrying 3
    assert dead.status is JobStatus.DEAD_LETTERED and dead.attempts == 2 and dead.error == "second"
    assert [(a.number, a.worker, a.error) for a in store.attempts(c.job.id)] == [
        (1, "w1", "first"),
        (2, "w2", "second"),
    ]
    assert [d.job_id for d in store.dead_letters(100, None).items].count(c.job.id) == 1


def test_requeue_gives_a_dead_lettered_job_fresh_attempts(store):
    [c] = store.create([new(max_attempts=1)])
    store.start(c.job.id, "w", rerun=False)
    store.fail(c.job.id, "boom", retry=True)

    again = store.requeue(c.job.id)

    assert again.status is JobStatus.PENDING and again.error is None
    assert c.job.id not in [d.job_id for d in store.dead_letters(500, None).items]
    store.start(c.job.id, "w", rerun=False)
    dead = store.fail(c.job.id, "boom again", retry=True)
    assert dead.status is JobStatus.DEAD_LETTERED and dead.attempts == 2
    assert store.requeue(uuid.uuid4()) is None


def test_cancel_stops_pending_and_running_jobs_but_not_final_ones(store):
    [p], [r], [f] = store.create([new()]), store.create([new()]), store.create([new()])
    store.start(r.job.id, "w", rerun=False)
    store.start(f.job.id, "w", rerun=False)
    store.complete(f.job.id, 1)

    assert store.cancel(p.job.id).status is JobStatus.CANCELLED
    assert store.cancel(r.job.id).status is JobStatus.CANCELLED
    assert store.cancel(f.job.id) is None
    assert store.complete(r.job.id, 1) is None  # the handler's late result does not undo the cancel
    assert store.attempts(r.job.id)[0].error == "cancelled"


def test_unreadable_message_is_dead_lettered_without_a_job(store):
    marker = f"garbage-{uuid.uuid4()}"

    store.dead_letter(None, None, "unreadable message", marker)

    [entry] = [d for d in store.dead_letters(500, None).items if d.message == marker]
    assert entry.job_id is None and entry.reason == "unreadable message"


def dead_letters_of(store: JobStore, job_id: uuid.UUID) -> list[DeadLetter]:
    return [d for d in store.dead_letters(500, None).items if d.job_id == job_id]


def outcome_delta(before: dict[JobStatus, int], after: dict[JobStatus, int]) -> dict[JobStatus, int]:
    """What changed between two `recent_outcomes` answers (the PostgreSQL store is shared by the session)."""
    return dict(Counter(after) - Counter(before))


def test_fail_with_dead_letter_skips_the_remaining_attempts(store):
    [c] = store.create([new(max_attempts=3)])
    store.start(c.job.id, "w", rerun=False)

    dead = store.fail(c.job.id, "unknown job type", retry=True, dead_letter=True)

    assert (dead.status, dead.attempts, dead.error) == (JobStatus.DEAD_LETTERED, 1, "unknown job type")
    assert dead.version == 3  # started 1, failed 2, dead-lettered 3
    [entry] = dead_letters_of(store, c.job.id)
    assert (entry.job_type, entry.reason) == ("hash", "unknown job type")


def test_fail_without_retry_is_final_and_leaves_no_dead_letter(store):
    [c] = store.create([new(max_attempts=3)])
    store.start(c.job.id, "w", rerun=False)
    count = store.dead_letter_count()

    failed = store.fail(c.job.id, "bad input", retry=False)

    assert (failed.status, failed.attempts, failed.error) == (JobStatus.FAILED, 1, "bad input")
    assert failed.version == 2  # started 1, failed 2: one event
    assert dead_letters_of(store, c.job.id) == []
    assert store.dead_letter_count() == count


def test_unpublished_skips_jobs_younger_than_the_given_age(store):
    [c] = store.create([new()])

    assert c.job.id not in {j.id for j in store.unpublished(60.0, 1000)}
    assert c.job.id in {j.id for j in store.unpublished(0.0, 1000)}


def test_unpublished_returns_at_most_limit_jobs_oldest_first(store):
    for _ in range(3):
        store.create([new()])

    got = store.unpublished(0.0, 2)

    assert len(got) == 2
    assert got[0].created_at <= got[1].created_at


def test_dead_letter_count_counts_dead_lettered_jobs_and_unreadable_messages(store):
    count = store.dead_letter_count()
    [c] = store.create([new(max_attempts=1)])
    store.start(c.job.id, "w", rerun=False)

    store.fail(c.job.id, "boom", retry=True)
    store.dead_letter(None, None, "unreadable message", "garbage")

    assert store.dead_letter_count() == count + 2


def test_recent_outcomes_counts_final_jobs_by_status(store):
    before = store.recent_outcomes(60.0)
    done, failed, cancelled, running = (store.create([new()])[0].job.id for _ in range(4))
    for job_id in (done, failed, running):
        store.start(job_id, "w", rerun=False)

    store.complete(done, 1)
    store.fail(failed, "bad input", retry=False)
    store.cancel(cancelled)

    assert outcome_delta(before, store.recent_outcomes(60.0)) == {
        JobStatus.COMPLETED: 1,
        JobStatus.FAILED: 1,
        JobStatus.CANCELLED: 1,
    }


def test_recent_outcomes_leave_out_jobs_that_finished_before_the_window(store):
    [c] = store.create([new()])
    store.start(c.job.id, "w", rerun=False)
    store.complete(c.job.id, 1)

    time.sleep(1.0)  # the job's outcome ages past the window

    assert store.recent_outcomes(0.5) == {}
    assert store.recent_outcomes(60.0).get(JobStatus.COMPLETED, 0) >= 1


def test_cancel_stops_a_retrying_job(store):
    [c] = store.create([new(max_attempts=3)])
    store.start(c.job.id, "w", rerun=False)
    store.fail(c.job.id, "first", retry=True)

    cancelled = store.cancel(c.job.id)

    assert cancelled.status is JobStatus.CANCELLED
    assert store.start(c.job.id, "w", rerun=False) is None
    assert [a.error for a in store.attempts(c.job.id)] == ["first"]  # the closed attempt keeps its error


def test_requeue_refuses_a_job_that_is_not_dead_lettered(store):
    [pending], [running], [failed] = (store.create([new()]) for _ in range(3))
    for c in (running, failed):
        store.start(c.job.id, "w", rerun=False)
    store.fail(failed.job.id, "bad input", retry=False)

    refused = [store.requeue(c.job.id) for c in (pending, running, failed)]

    assert refused == [None, None, None]
    assert [store.get(c.job.id).status for c in (pending, running, failed)] == [
        JobStatus.PENDING,
        JobStatus.RUNNING,
        JobStatus.FAILED,
    ]


def test_attempts_record_worker_and_times_in_order(store):
    [c] = store.create([new(max_attempts=3)])
    store.start(c.job.id, "w1", rerun=False)
    store.fail(c.job.id, "first", retry=True)
    store.start(c.job.id, "w2", rerun=False)
    open_attempt = store.attempts(c.job.id)[-1]

    store.complete(c.job.id, 1)

    first, second = store.attempts(c.job.id)
    assert [(a.number, a.worker, a.error) for a in (first, second)] == [(1, "w1", "first"), (2, "w2", None)]
    assert open_attempt.finished_at is None
    assert first.started_at <= first.finished_at <= second.started_at <= second.finished_at


def test_start_many_starts_each_job_once_in_the_order_asked(store):
    [a], [b], [c] = store.create([new()]), store.create([new()]), store.create([new()])
    store.start(c.job.id, "w0", rerun=False)  # already running: starts again only on a rerun

    got = store.start_many([(a.job.id, False), (c.job.id, False), (b.job.id, False), (a.job.id, True)], "w1")

    assert [j.id if j else None for j in got] == [a.job.id, None, b.job.id, None]  # a duplicate never runs twice
    assert [len(store.attempts(i)) for i in (a.job.id, b.job.id, c.job.id)] == [1, 1, 1]
    assert store.start_many([], "w1") == []


def test_finish_many_records_each_outcome_in_one_call(store):
    jobs = [store.create([new(max_attempts=2)])[0].job for _ in range(4)]
    store.start_many([(j.id, False) for j in jobs], "w")

    done = store.finish_many(
        [
            Finish(jobs[0].id, result={"ok": 1}),
            Finish(jobs[1].id, error="again", retry=True),
            Finish(jobs[2].id, error="never", retry=False),
            Finish(jobs[3].id, error="poison", dead_letter=True),
            Finish(jobs[0].id, result={"ok": 2}),  # no longer RUNNING: refused
            Finish(jobs[1].id, result={"ok": 3}),  # failed earlier in the batch: refused too
        ]
    )

    assert [d.status if d else None for d in done] == [
        JobStatus.COMPLETED,
        JobStatus.RETRYING,
        JobStatus.FAILED,
        JobStatus.DEAD_LETTERED,
        None,
        None,
    ]
    assert store.get(jobs[0].id).result == {"ok": 1}
    assert store.get(jobs[1].id).status is JobStatus.RETRYING
    assert [a.error for j in jobs for a in store.attempts(j.id)] == [None, "again", "never", "poison"]


def test_unfinished_counts_pending_and_retrying_only(store):
    before = store.unfinished()
    a, b, c = new(), new(), new()
    store.create([a, b, c])
    assert store.unfinished() == before + 3
    store.start_many([(a.id, False), (b.id, False)], "w")
    assert store.unfinished() == before + 1  # a and b run
    store.finish_many([Finish(a.id, result=1), Finish(b.id, error="boom", retry=True)])
    assert store.unfinished() == before + 2  # b retries, c waits; a is done


def test_resources_are_stored_with_the_job(store):
    asked = Resources(cpus=2, memory_mib=512, custom={"ssd": 1})
    [c, plain] = store.create([dataclasses.replace(new(), resources=asked), new("noop")])

    assert store.get(c.job.id).resources == asked and c.job.resources == asked
    assert store.get(plain.job.id).resources is None


def test_an_attempt_records_where_it_ran_and_why_it_waited(store):
    [inline, isolated] = store.create([new("noop"), new()])
    store.start_many([(inline.job.id, False)], "w1", RanOn("node-a", "11@127.0.0.1"))
    store.start(isolated.job.id, "w1", rerun=False)

    store.note_attempt(isolated.job.id, 1, AttemptNote(waiting="unschedulable: no node offers GPU 1"))
    [waiting] = store.attempts(isolated.job.id)
    store.note_attempt(isolated.job.id, 1, AttemptNote(ran_on=RanOn("node-b", "22@127.0.0.2")))
    [started] = store.attempts(isolated.job.id)

    [here] = store.attempts(inline.job.id)
    assert (here.node, here.executor, here.waiting) == ("node-a", "11@127.0.0.1", None)
    assert (waiting.node, waiting.waiting) == (None, "unschedulable: no node offers GPU 1")
    assert (started.node, started.executor, started.waiting) == ("node-b", "22@127.0.0.2", None)


def test_oldest_pending_is_when_the_longest_waiting_job_became_pending(store):
    [first, second] = store.create([new(), new()])
    store.start(first.job.id, "w1", rerun=False)

    oldest = store.oldest_pending()

    assert oldest is not None and oldest <= store.get(second.job.id).updated_at


def test_pooled_connections_the_server_ended_are_replaced_before_they_are_lent(settings, real):
    """The pool checks a connection without a round trip unless the server wrote to it unasked: sessions
    ended by the server (a restart, an administrator) must not reach a caller as an error."""
    name = f"victim-{uuid.uuid4().hex[:8]}"
    store = PostgresJobStore(make_conninfo(settings.postgres_dsn, application_name=name), settings.namespace, 4)
    try:
        [c] = store.create([new()])
        with psycopg.connect(settings.postgres_dsn, autocommit=True) as admin:
            sessions = "FROM pg_stat_activity WHERE application_name = %s"
            assert admin.execute(f"SELECT count(pg_terminate_backend(pid)) {sessions}", [name]).fetchone()[0] >= 1
            wait_for(lambda: not admin.execute(f"SELECT 1 {sessions}", [name]).fetchone(), "the sessions ended", 10)

        assert [store.get(c.job.id).id for _ in range(3)] == [c.job.id] * 3
    finally:
        store.close()


def test_a_completion_that_waited_for_a_rerun_closes_the_reruns_attempt(settings, real):
    """A completion blocked on the job's row by a rerun's start (the message redelivered while the first
    handler still ran) completes the rerun's attempt once that start commits: no attempt is left open."""
    jobs, ns = real.jobs, settings.namespace
    [c] = jobs.create([new()])
    jobs.start(c.job.id, "first", rerun=False)
    with psycopg.connect(settings.postgres_dsn) as rerun:  # a transaction, held open
        rerun.execute(f"UPDATE {ns}.jobs SET attempts = attempts + 1, version = version + 1 WHERE id = %s", [c.job.id])
        rerun.execute(
            f"INSERT INTO {ns}.job_attempts (job_id, number, worker, started_at) VALUES (%s, 2, 'rerun', now())",
            [c.job.id],
        )
        done: list[object] = []
        finishing = threading.Thread(target=lambda: done.append(jobs.complete(c.job.id, {"ok": 1})))
        finishing.start()
        with psycopg.connect(settings.postgres_dsn, autocommit=True) as admin:
            waiting = "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%job_attempts%%'"
            wait_for(lambda: admin.execute(waiting).fetchone() is not None, "the completion waiting for the row", 10)
        rerun.commit()
    finishing.join(10)

    [job] = done
    assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 2
    assert [(a.number, a.finished_at is not None) for a in jobs.attempts(c.job.id)] == [(1, False), (2, True)]


def test_a_publish_mark_skips_rows_a_batch_holds_instead_of_waiting_for_them(settings, real):
    """The gateway's marks run beside the processors' batches: waiting on their rows, in another order, is how
    the two deadlocked (and the batch was requeued). The mark is best effort: the held row stays unmarked
    (the sweeper publishes it again if it is still PENDING), the others are marked at once."""
    jobs, ns = real.jobs, settings.namespace
    [held], [free] = jobs.create([new()]), jobs.create([new()])
    with psycopg.connect(settings.postgres_dsn) as batch:  # a transaction holding one row, as a batch's does
        batch.execute(f"SELECT 1 FROM {ns}.jobs WHERE id = %s FOR UPDATE", [held.job.id])
        marking = threading.Thread(target=jobs.mark_published, args=([held.job.id, free.job.id],))
        marking.start()
        marking.join(10)
        finished = not marking.is_alive()
        batch.rollback()
    marking.join(10)
    assert finished, "the mark waited for the row the batch holds"
    stale = {j.id for j in jobs.unpublished(0.0, 1000)}
    assert held.job.id in stale and free.job.id not in stale
