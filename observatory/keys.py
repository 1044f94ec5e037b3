"""API keys: how they look, how they are made and checked. Only a key's SHA-256 digest is stored.

A key is `obs_<id>_<secret>`: the 12 hex digits of `id` find the stored record, the 256-bit secret makes
it unguessable. A fast hash is right for a random secret of that size (no dictionary to slow down), and
the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from contracts import ApiKeyCreate, ApiKeyCreated, ApiKeyInfo
from contracts.models import SCOPES
from observatory.settings import KEY_RE

BOOTSTRAP_NAME = "OBSERVATORY_ADMIN_KEY"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    return key[4:16] if KEY_RE.fullmatch(key) else None


def matches(key: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(key), stored_digest)


def new_key() -> str:
    return f"obs_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def issue(request: ApiKeyCreate, now: datetime | None = None, key: str | None = None) -> tuple[ApiKeyCreated, str]:
    """A new key (or `key`, already well formed) for `request`: what to show once, and its digest to store."""
    key = key or new_key()
    kid = key_id(key)
    if kid is None:
        raise ValueError("an API key has the form obs_<12 hex digits>_<43 characters of URL-safe base64>")
    now = now or datetime.now(UTC)
    expires = now + timedelta(days=request.expires_in_days) if request.expires_in_days else None
    created = ApiKeyCreated(
        id=kid, name=request.name, scopes=request.scopes, created_at=now, expires_at=expires, key=key
    )
    return created, digest(key)


def bootstrap(key: str) -> tuple[ApiKeyInfo, str]:
    """The record for OBSERVATORY_ADMIN_KEY: every scope, never expires."""
    created, stored = issue(ApiKeyCreate(name=BOOTSTRAP_NAME, scopes=list(SCOPES)), key=key)
    return ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})), stored
