"""Messages that cannot be read: the reason kept with their dead letter, and which consumer keeps it.

A work event (`job.created`, `job.requeued`) reaches both the processors and the aggregators; the processors
dead-letter it when it cannot be read. Every other event reaches only the aggregators, so they dead-letter
those, and each unreadable message is kept once. An element of a message of several events is kept on its
own: by the processors when it names a work event type (inline work reaches the processors in arrays of its
own, and the aggregators the same messages), else by the aggregators."""

from __future__ import annotations

import json

from pydantic import ValidationError

from observatory.topology import WORK_KEYS


def reason(e: ValidationError) -> str:
    """One line naming the first problems, e.g. `unreadable message: : Value error, contract version 2.0 …`."""
    return "unreadable message: " + "; ".join(
        f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_url=False)[:5]
    )


def only_for_aggregators(body: bytes) -> bool:
    """True when the body names an event type that the processors do not also receive. A body that is not
    even a JSON object with an event type is left to the processors (its routing is unknown)."""
    event_type = _event_type(body)
    return event_type is not None and event_type not in WORK_KEYS


def names_work(body: bytes) -> bool:
    """True when the body is a JSON object naming a work event type: the processors receive it too and keep it."""
    return _event_type(body) in WORK_KEYS


def _event_type(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        return None
    event_type = data.get("event_type") if isinstance(data, dict) else None
    return event_type if isinstance(event_type, str) else None
