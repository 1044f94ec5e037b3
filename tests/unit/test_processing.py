"""JobProcessor.handle: every branch, against the real embedded job store and a recording bus."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from contracts import EventType, JobStatus
from observatory.errors import JobFailed
from observatory.events import event_id, job_events, work_message
from observatory.processing import (
    MAX_ERROR_CHARS,
    InlineRunner,
    JobProcessor,
    Outcome,
    RetryPolicy,
    describe,
    outcome_of_error,
)
from tests.unit.fakes import (
    SOURCE,
    FakeDelivery,
    Logged,
    RecordingBus,
    RecordingHooks,
    registry,
    stored_job,
    work_delivery,
)

WORKER = "worker-1"


class ScriptedRunner:
    """A runner that returns a fixed outcome, optionally doing something first (e.g. cancelling the job)."""

    def __init__(self, outcome: Outcome, before: object = None) -> None:
        self.outcome, self.before = outcome, before
        self.calls: list[uuid.UUID] = []

    def __call__(self, job, cancelled) -> Outcome:
        self.calls.append(job.id)
        if self.before is not None:
            self.before(job, cancelled)
        return self.outcome


def delivery_job_id(delivery: FakeDelivery) -> uuid.UUID:
    return uuid.UUID(json.loads(delivery.body)["payload"]["job_id"])


def processor(jobs, bus, runner=None, retry=None, hooks=None) -> JobProcessor:
    reg = registry()
    return JobProcessor(jobs, bus, reg, runner or InlineRunner(reg), SOURCE, WORKER, retry=retry, hooks=hooks)


@pytest.fixture
def fixed_jitter(monkeypatch) -> None:
    """Backoff without jitter: each delay is exactly base * 2^(attempt-1), capped."""
    monkeypatch.setattr("observatory.retry.random.uniform", lambda lo, hi: 1.0)


# --- unreadable messages ---------------------------------------------------------------------------------


def test_unreadable_message_is_dead_lettered_with_its_reason(jobs, bus):
    delivery = FakeDelivery(b"{}")

    result = processor(jobs, bus).handle(delivery)

    [dl] = jobs.dead_letters(10, None).items
    assert result is None
    assert dl.job_id is None and dl.job_type is None
    assert dl.reason.startswith("unreadable message: ")
    assert dl.message == "{}"


def test_unreadable_message_reason_lists_the_first_five_errors(jobs, bus):
    # {} misses six required fields: event_type, event_id, occurred_at, producer, correlation_id, payload.
    processor(jobs, bus).handle(FakeDelivery(b"{}"))

    [dl] = jobs.dead_letters(10, None).items
    assert dl.reason == (
        "unreadable message: event_type: Field required; event_id: Field required; "
        "occurred_at: Field required; producer: Field required; correlation_id: Field required"
    )


def test_unreadable_message_reason_names_nested_fields_with_dots(jobs, bus):
    body = work_message(stored_job(jobs), SOURCE).model_dump(mode="json")
    body["payload"]["job_id"] = "not-a-uuid"
    delivery = FakeDelivery(json.dumps(body).encode())

    processor(jobs, bus).handle(delivery)

    [dl] = jobs.dead_letters(10, None).items
    assert dl.reason.startswith("unreadable message: payload.job_id: Input should be a valid UUID")


def test_unreadable_message_keeps_undecodable_bytes_as_replacement_characters(jobs, bus):
    processor(jobs, bus).handle(FakeDelivery(b"\xff\xfe"))

    [dl] = jobs.dead_letters(10, None).items
    assert dl.message == "\ufffd\ufffd"


def test_unreadable_message_is_rejected_without_requeue(jobs, bus):
    delivery = FakeDelivery(b"not json")

    processor(jobs, bus).handle(delivery)

    assert delivery.rejected is False
    assert not delivery.acked
    assert bus.published == []


def test_unreadable_message_is_rejected_after_its_dead_letter_is_committed(jobs, bus):
    calls: list[str] = []
    delivery = FakeDelivery(b"not json", calls=calls)

    processor(Logged(jobs, calls, ("dead_letter",)), bus).handle(delivery)

    assert calls == ["dead_letter", "reject requeue=False"]


# --- a normal run ----------------------------------------------------------------------------------------


def test_normal_run_completes_the_job_with_the_handler_result(jobs, bus):
    job = stored_job(jobs)

    outcome = processor(jobs, bus).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert outcome == Outcome(result={"n": 1, "label": "x"})
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"n": 1, "label": "x"}
    assert done.attempts == 1


def test_normal_run_publishes_started_then_completed(jobs, bus):
    job = stored_job(jobs)

    processor(jobs, bus).handle(work_delivery(job))

    assert bus.types == ["job.started", "job.completed"]
    assert {e.payload.job_id for e in bus.published} == {job.id}
    assert [e.producer for e in bus.published] == [SOURCE, SOURCE]
    assert bus.scheduled == []


def test_normal_run_records_the_attempt_under_the_worker_name(jobs, bus):
    job = stored_job(jobs)

    processor(jobs, bus).handle(work_delivery(job))

    [attempt] = jobs.attempts(job.id)
    assert attempt.worker == WORKER
    assert attempt.error is None and attempt.finished_at is not None


def test_normal_run_acks_only_after_commit_and_publish(jobs):
    calls: list[str] = []
    job = stored_job(jobs)
    delivery = work_delivery(job, calls=calls)

    processor(Logged(jobs, calls, ("start_many", "finish_many")), RecordingBus(calls)).handle(delivery)

    assert calls == ["start_many", "publish job.started", "finish_many", "publish job.completed", "ack"]
    assert delivery.rejected is None


# --- duplicates and redeliveries ---------------------------------------------------------------------------


def test_plain_duplicate_of_a_running_job_is_acked_without_a_rerun(jobs, bus):
    job = stored_job(jobs)
    jobs.start(job.id, "other-worker", rerun=False)
    runner = ScriptedRunner(Outcome(result=1))
    delivery = work_delivery(job, redelivered=False)

    result = processor(jobs, bus, runner).handle(delivery)

    assert result is None
    assert delivery.acked
    assert runner.calls == []
    assert jobs.get(job.id).status is JobStatus.RUNNING
    assert len(jobs.attempts(job.id)) == 1
    assert bus.published == []


def test_redelivered_message_of_a_running_job_runs_it_again(jobs, bus):
    job = stored_job(jobs)
    jobs.start(job.id, "dead-worker", rerun=False)

    processor(jobs, bus).handle(work_delivery(job, redelivered=True))

    done = jobs.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 2
    assert [a.worker for a in jobs.attempts(job.id)] == ["dead-worker", WORKER]


def test_redelivered_start_whose_events_were_lost_publishes_them_before_the_rerun(jobs, bus):
    job = stored_job(jobs)
    jobs.start(job.id, "dead-worker", rerun=False)  # committed, then the worker died before publishing

    processor(jobs, bus).handle(work_delivery(job, redelivered=True))

    assert [(e.event_type.value, e.payload.version) for e in bus.published] == [
        ("job.started", 1),
        ("job.started", 2),
        ("job.completed", 3),
    ]


def test_redelivered_message_of_a_pending_job_puts_no_second_work_message_on_the_queue(jobs, bus):
    job = stored_job(jobs)  # fetched by a consumer that died before starting it

    processor(jobs, bus).handle(work_delivery(job, redelivered=True))

    assert bus.types == ["job.started", "job.completed"]  # no job.created: that is a work message too


class ChangedRightAfterFirstRead:
    """The embedded job store, where someone else changes each job that the first `get_many` reads (the
    redelivery's look at its jobs) right after that read: `change(store, job_id)`."""

    def __init__(self, jobs, change) -> None:
        self._jobs, self._change, self._reads = jobs, change, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._jobs, name)

    def get_many(self, job_ids):
        got = self._jobs.get_many(job_ids)
        self._reads += 1
        if self._reads == 1:
            for job_id in job_ids:
                self._change(self._jobs, job_id)
        return got


def test_redelivered_pending_job_cancelled_before_its_start_has_its_cancellation_re_emitted(jobs, bus):
    job = stored_job(jobs)
    delivery = work_delivery(job, redelivered=True)

    processor(ChangedRightAfterFirstRead(jobs, lambda store, i: store.cancel(i)), bus).handle(delivery)

    assert bus.types == ["job.cancelled"]
    assert bus.published[0].event_id == event_id(job.id, EventType.JOB_CANCELLED, 1)
    assert delivery.acked


def test_redelivered_running_job_completed_by_its_dead_processor_after_the_read_has_its_completion_published(jobs, bus):
    job = stored_job(jobs)
    jobs.start(job.id, "dead-worker", rerun=False)  # started and published; then the killed worker's finish
    runner = ScriptedRunner(Outcome(result=1))
    delivery = work_delivery(job, redelivered=True)

    # The killed processor's completion, sent just before the kill, commits on the server after that read.
    late_completion = ChangedRightAfterFirstRead(jobs, lambda store, i: store.complete(i, "late"))
    processor(late_completion, bus, runner).handle(delivery)

    assert runner.calls == []  # no second run: the job was no longer RUNNING when this processor claimed it
    assert [(e.event_type.value, e.payload.version) for e in bus.published] == [
        ("job.started", 1),
        ("job.completed", 2),  # the store says COMPLETED: without this event the stats say RUNNING for ever
    ]
    assert delivery.acked


def test_redelivered_failed_attempt_whose_events_were_lost_publishes_them_before_the_next_run(jobs, bus):
    job = stored_job(jobs)
    jobs.start(job.id, "dead-worker", rerun=False)
    bus.publish_many(job_events(jobs.get(job.id), SOURCE))  # the start was published
    jobs.fail(job.id, "worker failed", retry=True)  # the failure committed, then the worker died
    bus.published.clear()

    processor(jobs, bus).handle(work_delivery(job, redelivered=True))

    assert [(e.event_type.value, e.payload.version) for e in bus.published] == [
        ("job.failed", 2),
        ("job.retrying", 3),
        ("job.started", 4),
        ("job.completed", 5),
    ]


def test_duplicate_of_a_final_job_publishes_its_final_events_again(jobs, bus):
    job = stored_job(jobs)
    proc = processor(jobs, bus)
    proc.handle(work_delivery(job))
    first = bus.published[-1]
    bus.published.clear()
    delivery = work_delivery(job)

    result = proc.handle(delivery)

    assert result is None
    assert delivery.acked
    assert [(e.event_type, e.event_id) for e in bus.published] == [(EventType.JOB_COMPLETED, first.event_id)]
    assert jobs.get(job.id).attempts == 1


def test_duplicate_of_a_dead_lettered_job_publishes_failed_and_dead_lettered_again(jobs, bus):
    job = stored_job(jobs, "boom", max_attempts=1)
    proc = processor(jobs, bus)
    proc.handle(work_delivery(job))
    last_two = [e.event_id for e in bus.published[-2:]]
    bus.published.clear()

    proc.handle(work_delivery(job, redelivered=True))

    assert bus.types == ["job.failed", "job.dead_lettered"]
    assert [e.event_id for e in bus.published] == last_two


def test_message_for_an_unknown_job_is_acked_and_dropped(jobs, bus, caplog):
    ghost = stored_job(jobs)
    delivery = work_delivery(ghost.model_copy(update={"id": uuid.uuid4()}))

    with caplog.at_level(logging.WARNING, logger="observatory.processing"):
        result = processor(jobs, bus).handle(delivery)

    assert result is None
    assert delivery.acked
    assert bus.published == []
    assert jobs.dead_letter_count() == 0
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("observatory.processing", f"message for unknown job {delivery_job_id(delivery)} dropped")
    ]


# --- job types that are not registered here ---------------------------------------------------------------


def test_unknown_job_type_is_dead_lettered_without_running(jobs, bus):
    job = stored_job(jobs, "ghost", max_attempts=3)
    runner = ScriptedRunner(Outcome(result=1))

    outcome = processor(jobs, bus, runner).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert runner.calls == []
    assert outcome.dead_letter
    assert done.status is JobStatus.DEAD_LETTERED
    assert done.error == "unknown job type 'ghost': no handler is registered here"
    assert bus.types == ["job.started", "job.failed", "job.dead_lettered"]
    assert bus.scheduled == []


def test_unknown_job_type_leaves_a_dead_letter_row(jobs, bus):
    job = stored_job(jobs, "ghost")

    processor(jobs, bus).handle(work_delivery(job))

    [dl] = jobs.dead_letters(10, None).items
    assert (dl.job_id, dl.job_type) == (job.id, "ghost")
    assert dl.reason == "unknown job type 'ghost': no handler is registered here"


# --- failures ---------------------------------------------------------------------------------------------


def test_failing_handler_with_attempts_left_is_retrying(jobs, bus):
    job = stored_job(jobs, "boom", max_attempts=3)

    outcome = processor(jobs, bus).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert outcome.error == "ValueError: boom 1"
    assert outcome.result is None
    assert done.status is JobStatus.RETRYING
    assert done.error == "ValueError: boom 1"
    assert bus.types == ["job.started", "job.failed", "job.retrying"]


def test_retrying_job_is_scheduled_as_its_work_message(jobs, bus):
    job = stored_job(jobs, "boom", max_attempts=3)

    processor(jobs, bus).handle(work_delivery(job))

    [(event, _)] = bus.scheduled
    assert event == work_message(jobs.get(job.id), SOURCE)
    assert event.event_type is EventType.JOB_RETRYING


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_retry_delay_follows_the_backoff_of_the_attempt(jobs, bus, attempt):
    job = stored_job(jobs, "boom", max_attempts=5)
    for _ in range(attempt - 1):  # earlier attempts died with their consumers
        jobs.start(job.id, "dead-worker", rerun=True)

    processor(jobs, bus, retry=RetryPolicy(base_s=2.0, max_s=100.0)).handle(work_delivery(job, redelivered=True))

    [(_, delay)] = bus.scheduled
    nominal = 2.0 * 2 ** (attempt - 1)
    assert nominal * 0.8 <= delay <= nominal * 1.2


def test_retry_delay_is_capped_by_the_policy_maximum(jobs, bus, fixed_jitter):
    job = stored_job(jobs, "boom", max_attempts=5)
    jobs.start(job.id, "dead-worker", rerun=False)

    processor(jobs, bus, retry=RetryPolicy(base_s=10.0, max_s=15.0)).handle(work_delivery(job, redelivered=True))

    [(_, delay)] = bus.scheduled
    assert delay == 15.0  # attempt 2: 10 * 2 = 20, capped at 15


def test_default_retry_policy_starts_at_one_second(jobs, bus, fixed_jitter):
    job = stored_job(jobs, "boom", max_attempts=3)

    processor(jobs, bus).handle(work_delivery(job))

    [(_, delay)] = bus.scheduled
    assert delay == 1.0


def test_default_retry_policy_caps_at_one_minute(jobs, bus, fixed_jitter):
    job = stored_job(jobs, "boom", max_attempts=10)
    for _ in range(7):  # attempt 8 would wait 2^7 = 128 s uncapped
        jobs.start(job.id, "dead-worker", rerun=True)

    processor(jobs, bus).handle(work_delivery(job, redelivered=True))

    [(_, delay)] = bus.scheduled
    assert delay == 60.0


def test_retry_policy_defaults():
    assert RetryPolicy() == RetryPolicy(base_s=1.0, max_s=60.0)


def test_retry_is_scheduled_after_commit_and_publish_and_before_ack(jobs):
    calls: list[str] = []
    job = stored_job(jobs, "boom", max_attempts=3)
    delivery = work_delivery(job, calls=calls)

    processor(Logged(jobs, calls, ("start_many", "finish_many")), RecordingBus(calls)).handle(delivery)

    assert calls == [
        "start_many",
        "publish job.started",
        "finish_many",
        "publish job.failed",
        "publish job.retrying",
        "schedule job.retrying",
        "ack",
    ]


def test_permanent_failure_is_failed_without_a_retry(jobs, bus):
    job = stored_job(jobs, "refuse", max_attempts=3)

    outcome = processor(jobs, bus).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert outcome == Outcome(error="bad input 1", retry=False)
    assert done.status is JobStatus.FAILED
    assert done.error == "bad input 1"
    assert bus.types == ["job.started", "job.failed"]
    assert bus.scheduled == []


def test_last_attempt_failing_dead_letters_the_job(jobs, bus):
    job = stored_job(jobs, "boom", max_attempts=1)

    processor(jobs, bus).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert done.status is JobStatus.DEAD_LETTERED
    assert bus.types == ["job.started", "job.failed", "job.dead_lettered"]
    assert bus.scheduled == []
    [dl] = jobs.dead_letters(10, None).items
    assert (dl.job_id, dl.reason) == (job.id, "ValueError: boom 1")


def test_failing_handler_is_acked_after_its_failure_is_committed(jobs, bus):
    job = stored_job(jobs, "boom", max_attempts=1)
    delivery = work_delivery(job)

    processor(jobs, bus).handle(delivery)

    assert delivery.acked and delivery.rejected is None


# --- error messages ---------------------------------------------------------------------------------------


def test_handler_error_is_described_by_its_exception_line_and_notes():
    e = ValueError("boom")
    e.add_note("while hashing")

    assert describe(e) == "ValueError: boom\nwhile hashing"


def test_handler_error_description_is_truncated():
    assert describe(ValueError("x" * 5000)) == ("ValueError: " + "x" * 5000)[:MAX_ERROR_CHARS]
    assert MAX_ERROR_CHARS == 4000


def test_job_failed_message_is_kept_without_its_class_and_truncated():
    outcome = outcome_of_error(JobFailed("y" * 5000))

    assert outcome == Outcome(error="y" * MAX_ERROR_CHARS, retry=True)


def test_handler_bug_is_a_retryable_failure():
    outcome = outcome_of_error(KeyError("k"))

    assert outcome == Outcome(error="KeyError: 'k'")
    assert outcome.retry and not outcome.dead_letter and not outcome.cancelled and not outcome.timed_out


# --- cancellation -----------------------------------------------------------------------------------------


def cancelled_id(job_id: uuid.UUID) -> uuid.UUID:
    """The id of the `job.cancelled` event that the canceller published (a job started once: version 2)."""
    return event_id(job_id, EventType.JOB_CANCELLED, 2)


def test_cancelled_outcome_leaves_the_job_cancelled_and_only_re_emits_its_cancellation(jobs, bus):
    job = stored_job(jobs)
    runner = ScriptedRunner(Outcome(cancelled=True), before=lambda j, _: jobs.cancel(j.id))
    delivery = work_delivery(job)

    outcome = processor(jobs, bus, runner).handle(delivery)

    assert outcome.cancelled
    assert jobs.get(job.id).status is JobStatus.CANCELLED
    # the canceller's own event, again (stored and counted once): in case the canceller could not publish it
    assert bus.types == ["job.started", "job.cancelled"]
    assert bus.published[-1].event_id == cancelled_id(job.id)
    assert bus.scheduled == []
    assert delivery.acked


def test_job_cancelled_while_its_handler_ran_stays_cancelled(jobs, bus):
    job = stored_job(jobs)
    runner = ScriptedRunner(Outcome(result=1), before=lambda j, _: jobs.cancel(j.id))

    processor(jobs, bus, runner).handle(work_delivery(job))

    done = jobs.get(job.id)
    assert done.status is JobStatus.CANCELLED
    assert done.result is None
    assert bus.types == ["job.started", "job.cancelled"]
    assert bus.published[-1].event_id == cancelled_id(job.id)


def test_job_cancelled_while_its_failing_handler_ran_is_not_retried(jobs, bus):
    job = stored_job(jobs, "boom")
    runner = ScriptedRunner(Outcome(error="boom"), before=lambda j, _: jobs.cancel(j.id))

    processor(jobs, bus, runner).handle(work_delivery(job))

    assert jobs.get(job.id).status is JobStatus.CANCELLED
    assert bus.types == ["job.started", "job.cancelled"]
    assert bus.scheduled == []


def test_runner_sees_cancelled_turn_true_once_the_job_is_cancelled(jobs, bus):
    job = stored_job(jobs)
    seen: list[bool] = []

    def before(j, cancelled) -> None:
        seen.append(cancelled())
        jobs.cancel(j.id)
        seen.append(cancelled())

    processor(jobs, bus, ScriptedRunner(Outcome(cancelled=True), before)).handle(work_delivery(job))

    assert seen == [False, True]


def test_runner_sees_cancelled_when_the_job_is_gone(jobs, bus):
    job = stored_job(jobs)
    seen: list[bool] = []

    class Vanishing:
        """The store loses the job once it has started (e.g. it was purged)."""

        def __getattr__(self, name):
            return getattr(jobs, name)

        def get(self, job_id):
            return None

    processor(Vanishing(), bus, ScriptedRunner(Outcome(cancelled=True), lambda j, c: seen.append(c()))).handle(
        work_delivery(job)
    )

    assert seen == [True]


# --- hooks ------------------------------------------------------------------------------------------------


def test_hooks_see_a_completed_attempt(jobs, bus):
    hooks = RecordingHooks()
    job = stored_job(jobs)

    processor(jobs, bus, hooks=hooks).handle(work_delivery(job))

    [(job_type, status, seconds, timed_out)] = hooks.finished
    assert hooks.started == ["echo"]
    assert (job_type, status, timed_out) == ("echo", JobStatus.COMPLETED, False)
    assert 0 <= seconds < 5


def test_hooks_see_how_long_the_attempt_took(jobs, bus):
    hooks = RecordingHooks()
    job = stored_job(jobs)
    runner = ScriptedRunner(Outcome(result=1), before=lambda *_: time.sleep(0.05))

    processor(jobs, bus, runner, hooks=hooks).handle(work_delivery(job))

    [(_, _, seconds, _)] = hooks.finished
    assert 0.05 <= seconds < 5


def test_hooks_see_a_timed_out_attempt(jobs, bus):
    hooks = RecordingHooks()
    job = stored_job(jobs)
    runner = ScriptedRunner(Outcome(error="timed out after 30s", timed_out=True))

    processor(jobs, bus, runner, hooks=hooks).handle(work_delivery(job))

    assert [(t, s, to) for t, s, _, to in hooks.finished] == [("echo", JobStatus.RETRYING, True)]


@pytest.mark.parametrize(
    ("job_type", "status"),
    [("boom", JobStatus.DEAD_LETTERED), ("refuse", JobStatus.FAILED), ("ghost", JobStatus.DEAD_LETTERED)],
)
def test_hooks_see_the_status_the_job_ended_in(jobs, bus, job_type, status):
    hooks = RecordingHooks()
    job = stored_job(jobs, job_type, max_attempts=1)

    processor(jobs, bus, hooks=hooks).handle(work_delivery(job))

    assert [(t, s) for t, s, _, _ in hooks.finished] == [(job_type, status)]


def test_hooks_see_a_cancelled_attempt(jobs, bus):
    hooks = RecordingHooks()
    job = stored_job(jobs)
    runner = ScriptedRunner(Outcome(result=1), before=lambda j, _: jobs.cancel(j.id))

    processor(jobs, bus, runner, hooks=hooks).handle(work_delivery(job))

    assert [(t, s) for t, s, _, _ in hooks.finished] == [("echo", JobStatus.CANCELLED)]


def test_hooks_see_nothing_for_messages_that_run_nothing(jobs, bus):
    hooks = RecordingHooks()
    job = stored_job(jobs)
    jobs.start(job.id, "other-worker", rerun=False)
    proc = processor(jobs, bus, hooks=hooks)

    proc.handle(FakeDelivery(b"not json"))
    proc.handle(work_delivery(job))

    assert (hooks.started, hooks.finished) == ([], [])


def test_event_ids_are_deterministic_per_job_and_version(jobs, bus):
    job = stored_job(jobs)

    processor(jobs, bus).handle(work_delivery(job))

    assert [e.event_id for e in bus.published] == [
        event_id(job.id, EventType.JOB_STARTED, 1),
        event_id(job.id, EventType.JOB_COMPLETED, 2),
    ]


# --- job types that run inside the processor ---------------------------------------------------------------


def test_inline_job_type_runs_in_the_processor_not_through_the_runner(jobs, bus):
    job = stored_job(jobs, "quick")
    runner = ScriptedRunner(Outcome(result="from the runner"))

    outcome = processor(jobs, bus, runner).handle(work_delivery(job))

    assert runner.calls == []
    assert outcome == Outcome(result={"n": 1, "label": "x"})
    assert jobs.get(job.id).status is JobStatus.COMPLETED


# --- batches ------------------------------------------------------------------------------------------------


def test_batch_runs_each_job_once_and_acks_every_message(jobs, bus):
    a, b = stored_job(jobs), stored_job(jobs)
    deliveries = [work_delivery(a), work_delivery(b), work_delivery(a)]

    outcomes = processor(jobs, bus).handle_batch(deliveries)

    assert [o is not None for o in outcomes] == [True, True, False]
    assert all(d.acked for d in deliveries)
    assert [jobs.get(j.id).attempts for j in (a, b)] == [1, 1]


class ShortAnswers:
    """A job store that breaks the batch contract: one answer fewer than it was asked for."""

    def __init__(self, inner, method: str) -> None:
        self._inner, self._method = inner, method

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr
        return lambda *args, **kwargs: attr(*args, **kwargs)[:-1]


@pytest.mark.parametrize("method", ["start_many", "finish_many"])
def test_store_answering_fewer_jobs_than_asked_fails_the_batch_before_any_ack(jobs, bus, method):
    deliveries = [work_delivery(stored_job(jobs)), work_delivery(stored_job(jobs))]

    with pytest.raises(ValueError, match="zip"):
        processor(ShortAnswers(jobs, method), bus).handle_batch(deliveries)

    assert not any(d.acked for d in deliveries)
