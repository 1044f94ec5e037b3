from __future__ import annotations

from pydantic import BaseModel, Field

from contracts import Resources
from observatory.jobs.registry import CPU_BOUND_LIMIT, job_type


class PrimesPayload(BaseModel):
    limit: int = Field(ge=0, le=50_000_000)


def count_primes_below(limit: int) -> int:
    """Sieve of Eratosthenes on a bytearray: fast and small enough for 50 million."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for i in range(2, int((limit - 1) ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)


@job_type(
    "primes",
    PrimesPayload,
    "Count the primes below `limit`.",
    resources=Resources(cpus=1),
    max_resources=CPU_BOUND_LIMIT,
)
def primes(p: PrimesPayload) -> dict[str, int]:
    return {"limit": p.limit, "count": count_primes_below(p.limit)}
