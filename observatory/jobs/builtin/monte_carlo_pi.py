from __future__ import annotations

import numpy as np
import ray
from pydantic import BaseModel, Field, model_validator

from contracts import Resources
from observatory.jobs.registry import CPU_BOUND_LIMIT, job_type


class MonteCarloPiPayload(BaseModel):
    samples: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    shards: int = Field(
        default=4, ge=1, le=64, description="Ray tasks to spread the samples over; never more than `samples`."
    )
    # numpy's generators take only non-negative seeds; shard i uses seed + i, so leave room below 2^63.
    seed: int | None = Field(default=None, ge=0, le=2**62, description="Fix for a reproducible estimate.")

    @model_validator(mode="after")
    def _enough_samples(self) -> MonteCarloPiPayload:
        """More shards than samples would leave shards empty: use one per sample instead. Accepting this
        (rather than a 422) keeps every payload that the published JSON Schema allows a valid one."""
        self.shards = min(self.shards, self.samples)
        return self


_CHUNK = 1_000_000


@ray.remote(num_cpus=0.5)
def count_inside(samples: int, seed: int | None) -> int:
    """One shard: how many uniform points of the unit square fall inside the quarter circle."""
    rng = np.random.default_rng(seed)
    inside = 0
    left = samples
    while left > 0:  # bounded chunks keep memory flat for huge shards
        n = min(left, _CHUNK)
        x, y = rng.random(n), rng.random(n)
        inside += int(np.count_nonzero(x * x + y * y <= 1.0))
        left -= n
    return inside


@job_type(
    "monte_carlo_pi",
    MonteCarloPiPayload,
    "Estimate π from `samples` random points over `shards` Ray tasks.",
    resources=Resources(cpus=1),
    max_resources=CPU_BOUND_LIMIT,
)
def monte_carlo_pi(p: MonteCarloPiPayload) -> dict[str, float | int]:
    base, extra = divmod(p.samples, p.shards)
    sizes = [base + (1 if i < extra else 0) for i in range(p.shards)]
    seeds = [None if p.seed is None else p.seed + i for i in range(p.shards)]
    inside = sum(ray.get([count_inside.remote(n, s) for n, s in zip(sizes, seeds, strict=True)]))
    return {"estimate": 4.0 * inside / p.samples, "samples": p.samples, "shards": p.shards}
