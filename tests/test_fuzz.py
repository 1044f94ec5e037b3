"""Fuzz both HTTP apps from their own OpenAPI schemas: no input may cause a 5xx, and afterwards the
stores still agree with each other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from contracts import Stats
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25


FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def fuzz(api: httpx.Client, prefix: str) -> list[str]:
    """Every operation of the app's schema, fed generated requests (valid and invalid) through Hypothesis."""
    schema = schemathesis.openapi.from_dict(api.get(f"{prefix}/openapi.json").json())
    seen = []
    for result in schema.get_all_operations():
        operation = result.ok()
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @FUZZ
        def one(case: Any) -> None:
            response = case.call(base_url=f"{api.base_url}{prefix}", timeout=30)
            where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, where  # every error is the JSON error body

        one()
    return seen


def test_gateway_never_answers_5xx(api):
    assert "POST /jobs" in fuzz(api, "/api")


def test_read_model_never_answers_5xx(api):
    assert "GET /jobs/{job_id}" in fuzz(api, "/read")


def test_after_fuzzing_the_stores_agree(api, truth):
    # Fuzzed jobs may run for minutes (sleep up to 300 s): cancel what is left, then compare.
    for job in truth.jobs.list(None, None, 500, None).items:
        if not job.status.is_final:
            api.post(f"/api/jobs/{job.id}/cancel")

    def agree() -> bool:
        want = Stats.from_counts(truth.jobs.counts()[0], None, "store").model_dump(exclude={"last_event_at", "source"})
        got = api.get("/read/stats").json()
        return not got["running"] and not got["pending"] and {k: got[k] for k in want} == want

    wait_for(agree, "the cache to agree with the job store", 180)
