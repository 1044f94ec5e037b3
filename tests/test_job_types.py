from __future__ import annotations

import hashlib
import math

import pytest
import ray

from observatory.errors import InvalidSubmission, JobFailed
from observatory.jobs import default_registry
from observatory.jobs.builtin.primes import count_primes_below

registry = default_registry()


def test_builtin_types_are_registered():
    assert {"sleep", "hash", "primes", "monte_carlo_pi"} <= set(registry.names)


def test_hash_repeats_sha256_rounds_times():
    expected = hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()

    assert registry.run("hash", {"data": "abc", "rounds": 2})["sha256"] == expected


@pytest.mark.parametrize(("limit", "count"), [(0, 0), (2, 0), (3, 1), (10, 4), (100, 25), (1_000_000, 78498)])
def test_primes_counts_primes_below_limit(limit: int, count: int):
    assert count_primes_below(limit) == count


def test_sleep_with_certain_failure_fails():
    with pytest.raises(JobFailed):
        registry.run("sleep", {"seconds": 0, "fail_probability": 1})


def test_sleep_without_failure_returns_seconds():
    assert registry.run("sleep", {"seconds": 0.01}) == {"slept": 0.01}


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(InvalidSubmission) as e:
        registry.validate("nope", {}, ["body"])

    assert e.value.details[0][0] == ["body", "type"]
    assert "hash" in str(e.value) and "primes" in str(e.value)


def test_invalid_payload_names_the_field():
    with pytest.raises(InvalidSubmission) as e:
        registry.validate("sleep", {"seconds": 301}, ["body", "jobs", 3])

    assert e.value.details[0][0] == ["body", "jobs", 3, "payload", "seconds"]


def test_monte_carlo_pi_fans_out_over_ray_tasks():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = registry.run("monte_carlo_pi", {"samples": 400_000, "shards": 4, "seed": 7})
        again = registry.run("monte_carlo_pi", {"samples": 400_000, "shards": 4, "seed": 7})
    finally:
        ray.shutdown()

    assert abs(result["estimate"] - math.pi) < 0.02
    assert result == again  # seeded shards are reproducible
