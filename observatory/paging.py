"""Opaque keyset cursors for the job list, shared by every job store."""

from __future__ import annotations

import base64
import json
from datetime import datetime
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
