"""Backoff between attempts: exponential with jitter, so retries of many jobs do not arrive in lockstep."""

from __future__ import annotations

import random

JITTER = 0.2  # each delay is scaled by a random factor in [1 - JITTER, 1 + JITTER]


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before the attempt after `attempt` (1-based): base · 2^(attempt-1), capped, with jitter.
    With JITTER < 1/3 each delay is strictly longer than the one before, until the cap."""
    delay = min(max_s, base_s * 2 ** (attempt - 1))
    return delay * random.uniform(1 - JITTER, 1 + JITTER)
