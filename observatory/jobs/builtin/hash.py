from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from contracts import Resources
from contracts.models import NO_NUL
from observatory.jobs.registry import CPU_BOUND_LIMIT, job_type


class HashPayload(BaseModel):
    data: str = Field(max_length=65536, pattern=NO_NUL)
    rounds: int = Field(default=1, ge=1, le=1_000_000)


@job_type(
    "hash",
    HashPayload,
    "SHA-256 of `data`, re-hashed `rounds` times (hex digest).",
    resources=Resources(cpus=1),
    max_resources=CPU_BOUND_LIMIT,
)
def hash_rounds(p: HashPayload) -> dict[str, str | int]:
    digest = p.data.encode()
    for _ in range(p.rounds):
        digest = hashlib.sha256(digest).digest()
    return {"sha256": digest.hex(), "rounds": p.rounds}
