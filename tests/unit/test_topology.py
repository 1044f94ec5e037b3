"""How a publish is cut into messages (topology.messages): pure logic, no bus."""

from __future__ import annotations

import uuid

from observatory.topology import INLINE_BATCH_KEY, INLINE_BATCH_MAX, body, messages, routes
from tests.test_event_store import lifecycle


def test_a_large_publish_of_inline_work_spreads_over_even_messages_in_order():
    created = [lifecycle(uuid.uuid4(), "noop")[0] for _ in range(2 * INLINE_BATCH_MAX + 1)]

    out = messages(created, {"noop"})

    assert [key for key, _ in out] == [INLINE_BATCH_KEY] * 3
    assert [len(w) for _, w in out] == [21, 22, 22]
    assert [e for _, w in out for e in w] == created
    # The aggregators get the same messages, not one of all the work (which the jobs' later events could overtake).
    assert routes(INLINE_BATCH_KEY) == ["inline_batches", "batches"]


def test_a_single_inline_job_goes_as_an_array_too_and_a_single_other_event_as_itself():
    created, started, _ = lifecycle(uuid.uuid4(), "noop")

    assert messages([created], {"noop"}) == [(INLINE_BATCH_KEY, [created])]
    assert messages([created, started], {"noop"}) == [(INLINE_BATCH_KEY, [created]), ("job.started", [started])]
    assert body([created], INLINE_BATCH_KEY) == b"[" + created.model_dump_json().encode() + b"]"
    assert messages([started], {"noop"}) == [("job.started", [started])]
    assert body([started], "job.started") == started.model_dump_json().encode()
    assert routes("job.started") == ["events"]
