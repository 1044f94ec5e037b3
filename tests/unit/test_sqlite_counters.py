"""The embedded counters: what the shared conformance suite (tests/test_counters.py) leaves unpinned."""

from __future__ import annotations

import uuid

import pytest

from contracts import EventType, JobStatus
from observatory.adapters.sqlite_counters import SQLiteCounters
from observatory.errors import CacheUnavailable
from tests.unit.fakes import job_event


def test_first_application_of_an_event_reports_it_counted(counters):
    created = job_event(uuid.uuid4(), 0, JobStatus.PENDING, EventType.JOB_CREATED)

    assert counters.apply(created) is True


def test_event_of_the_same_version_does_not_move_the_job(counters):
    job_id = uuid.uuid4()
    counters.apply(job_event(job_id, 0, JobStatus.PENDING, EventType.JOB_CREATED))
    counters.apply(job_event(job_id, 1, JobStatus.RUNNING, EventType.JOB_STARTED))

    counters.apply(job_event(job_id, 1, JobStatus.COMPLETED, EventType.JOB_COMPLETED))  # another id, same version

    s = counters.stats()
    assert (s.running, s.completed) == (1, 0)


def test_unusable_file_is_a_cache_unavailable_error(tmp_path):
    with pytest.raises(CacheUnavailable):
        SQLiteCounters(tmp_path).setup()  # a folder, not a database file
