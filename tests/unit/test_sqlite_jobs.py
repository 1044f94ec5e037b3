"""The embedded job store: what the shared conformance suite (tests/test_job_store.py) leaves unpinned."""

from __future__ import annotations

import json
import uuid

import pytest

from contracts import JobStatus
from observatory.adapters import sqlite_jobs
from observatory.adapters.sqlite_base import from_us
from observatory.adapters.sqlite_jobs import SQLiteJobStore
from observatory.errors import StoreUnavailable
from observatory.ports import NewJob
from tests.unit.fakes import new_job, stored_job

T = 1_700_000_000_000_000  # a fixed "now", in microseconds


@pytest.fixture
def clock(monkeypatch):
    """Set the store's clock: `clock(us)` makes now_us() return us."""

    def at(us: int) -> None:
        monkeypatch.setattr(sqlite_jobs, "now_us", lambda: us)

    return at


def test_created_job_reads_back_with_every_field_it_was_given(jobs):
    [c] = jobs.create([NewJob(uuid.uuid4(), "echo", {"n": 1}, "corr-7", "key-7", 5, 12.5)])

    job = jobs.get(c.job.id)

    assert (job.correlation_id, job.idempotency_key, job.max_attempts, job.timeout_s) == ("corr-7", "key-7", 5, 12.5)
    assert job == c.job


def test_repeated_idempotency_key_is_reported_as_not_created(jobs):
    jobs.create([new_job(key="k")])

    [again] = jobs.create([new_job(key="k")])

    assert again.created is False


def test_unusable_file_is_a_store_unavailable_error(tmp_path):
    with pytest.raises(StoreUnavailable):
        SQLiteJobStore(tmp_path).setup()  # a folder, not a database file


def test_cancelled_job_has_a_finish_time(jobs, clock):
    job = stored_job(jobs)
    clock(T)

    cancelled = jobs.cancel(job.id)

    assert cancelled.finished_at == from_us(T)


def test_retrying_job_starts_again_on_a_rerun(jobs):
    job = stored_job(jobs)
    jobs.start(job.id, "w1", rerun=False)
    jobs.fail(job.id, "boom", retry=True)

    again = jobs.start(job.id, "w2", rerun=True)

    assert again.status is JobStatus.RUNNING and again.attempts == 2


def test_list_filters_by_job_type(jobs):
    echo = stored_job(jobs, "echo")
    stored_job(jobs, "boom")

    page = jobs.list(None, "echo", 10, None)

    assert [j.id for j in page.items] == [echo.id]


def test_list_returns_a_full_page_of_limit_jobs(jobs):
    for _ in range(3):
        stored_job(jobs)

    page = jobs.list(None, None, 2, None)

    assert len(page.items) == 2 and page.next_cursor is not None


def test_dead_letter_keeps_its_job_id_and_type(jobs):
    job_id = uuid.uuid4()

    jobs.dead_letter(job_id, "echo", "no handler", "{}")

    [dl] = jobs.dead_letters(10, None).items
    assert (dl.job_id, dl.job_type, dl.reason, dl.message) == (job_id, "echo", "no handler", "{}")


def test_dead_lettered_job_is_recorded_without_its_result(jobs):
    job = stored_job(jobs, max_attempts=1)
    jobs.start(job.id, "w", rerun=False)

    jobs.fail(job.id, "boom", retry=True)

    [dl] = jobs.dead_letters(10, None).items
    message = json.loads(dl.message)
    assert message["id"] == str(job.id) and message["status"] == "DEAD_LETTERED"
    assert "result" not in message


def page_all_dead_letters(jobs, limit: int) -> list[uuid.UUID]:
    ids, cursor = [], None
    for _ in range(10):  # more pages than there are dead letters: a cursor that loops is caught below
        page = jobs.dead_letters(limit, cursor)
        assert len(page.items) <= limit
        ids += [d.id for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    raise AssertionError(f"dead letter pages do not end: {ids}")


def test_dead_letters_page_newest_first(jobs, clock):
    for i, at in enumerate((T, T + 1, T + 2)):
        clock(at)
        jobs.dead_letter(None, None, f"reason {i}", "")

    pages = [jobs.dead_letters(2, None)]
    pages.append(jobs.dead_letters(2, pages[0].next_cursor))

    assert [[d.reason for d in p.items] for p in pages] == [["reason 2", "reason 1"], ["reason 0"]]
    assert pages[1].next_cursor is None


def test_dead_letters_written_at_the_same_time_page_by_id(jobs, clock):
    clock(T)
    for i in range(4):
        jobs.dead_letter(None, None, f"reason {i}", "")

    ids = page_all_dead_letters(jobs, limit=1)

    assert ids == sorted((d.id for d in jobs.dead_letters(10, None).items), key=str, reverse=True)
    assert len(set(ids)) == 4


def test_recent_outcomes_window_is_exactly_window_seconds(jobs, clock):
    job = stored_job(jobs)
    jobs.start(job.id, "w", rerun=False)
    clock(T)
    jobs.complete(job.id, 1)

    clock(T + 10_000_000 - 1)
    inside = jobs.recent_outcomes(10)
    clock(T + 10_000_000)
    outside = jobs.recent_outcomes(10)

    assert (inside, outside) == ({JobStatus.COMPLETED: 1}, {})


def test_unpublished_threshold_is_exactly_older_than_seconds(jobs, clock):
    clock(T)
    job = stored_job(jobs)

    clock(T + 60_000_000)
    at_threshold = jobs.unpublished(60, 10)
    clock(T + 60_000_001)
    past_threshold = jobs.unpublished(60, 10)

    assert (at_threshold, [j.id for j in past_threshold]) == ([], [job.id])


def test_failure_with_an_empty_message_stores_an_empty_error(jobs):
    job = stored_job(jobs)
    jobs.start(job.id, "w", rerun=False)

    failed = jobs.fail(job.id, "", retry=True)

    assert failed.error == "" and jobs.attempts(job.id)[0].error == ""
