"""Opaque keyset cursors for the job list, shared by every job store."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

from observatory.errors import InvalidSubmission

# A cursor is the sort key of the last row seen: its creation time in microseconds since the epoch and its
# id, "<micros>.<32 hex digits>". Every string of this form is a valid cursor (paging resumes after that key),
# so the pattern published in OpenAPI is exactly what the server accepts.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
CURSOR_DESCRIPTION = (
    "Opaque paging token: pass the previous page's next_cursor unchanged. Its form is "
    "`<microseconds since the epoch>.<job id as 32 hex digits>`, the sort key of the last item seen."
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{job_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if re.fullmatch(CURSOR_PATTERN, cursor) is None:
        raise InvalidSubmission("invalid cursor", [(["query", "cursor"], "not a cursor returned by this API")])
    micros, job_id = cursor.split(".")
    return _EPOCH + timedelta(microseconds=int(micros)), UUID(hex=job_id)


class _Keyed(Protocol):
    id: UUID
    created_at: datetime


def next_cursor(items: Sequence[_Keyed], fetched: int, limit: int) -> str | None:
    """Stores fetch `limit + 1` rows: an extra row means there is a next page, starting after the last item."""
    return encode_cursor(items[-1].created_at, items[-1].id) if fetched > limit and items else None
