"""Opaque keyset cursors for the job list, shared by every job store."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from observatory.errors import InvalidSubmission


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(job_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        return datetime.fromisoformat(created), UUID(job_id)
    except (ValueError, TypeError) as e:
        raise InvalidSubmission("invalid cursor", [(["query", "cursor"], "not a cursor returned by this API")]) from e


class _Keyed(Protocol):
    id: UUID
    created_at: datetime


def next_cursor(items: Sequence[_Keyed], fetched: int, limit: int) -> str | None:
    """Stores fetch `limit + 1` rows: an extra row means there is a next page, starting after the last item."""
    return encode_cursor(items[-1].created_at, items[-1].id) if fetched > limit and items else None
