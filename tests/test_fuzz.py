"""Fuzz both HTTP apps: schemathesis with every check against each app's own OpenAPI document (the server
does exactly what the document says, never a 5xx), and real jobs of every registered type generated from
that type's payload schema, valid and invalid, so the fuzz drives the whole pipeline. Afterwards the
cache-backed stats must equal the job store in every field."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import httpx
import pytest
from datamodel_code_generator import DataModelType, InputFileType, PythonVersion, generate
from datamodel_code_generator.format import Formatter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.openapi import from_dict

from contracts import ApiKeyCreate, ApiKeyInfo, JobStatus
from observatory import backends
from observatory import keys as api_keys
from tests.cluster import ROOT
from tests.helpers import QUICK, QUICK_ATTEMPTS, final_jobs, stats_match_the_store, wait_for

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 8  # with every phase (coverage, stateful) this is well over 8 requests per operation
KEYLESS_EXAMPLES = 3  # without a key every answer is the same 401: a few per operation, besides the coverage phase
JOB_EXAMPLES = 25
KEYLESS = "tests.fuzz_keyless"

FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
JOBS = settings(FUZZ, max_examples=JOB_EXAMPLES)
JSON = {"content-type": "application/json"}

WRONG_TYPE = st.one_of(
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


def conformance(
    api: httpx.Client,
    prefix: str,
    scratch: Path,
    key: str | None,
    checks: str = "all",
    examples: int = EXAMPLES_PER_OPERATION,
) -> tuple[int, str]:
    """schemathesis (its CLI, as a user runs it) with every check and every phase, stateful included,
    against the app's live OpenAPI document: no 5xx, every response as documented, every schema-valid
    request accepted and every schema-violating one refused, and (with a key) no operation that answers
    without it. Returns the exit code and the report."""
    operations = sum(len(ops) for ops in api.get(f"{prefix}/openapi.json").json()["paths"].values())
    run = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--no-color", "run", f"{api.base_url}{prefix}/openapi.json"]
        + ["--checks", checks, "--phases", "examples,coverage,fuzzing,stateful"]
        + ["--max-examples", str(examples), "--workers", "1", "--request-timeout", "30"]
        + ["--suppress-health-check", "all"]
        + (["--header", f"Authorization: Bearer {key}"] if key else []),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=scratch,  # schemathesis keeps its state (.schemathesis/) in the working directory
        # With a key, the jobs of schema-valid cases are made quick (tests/fuzz_hooks.py); the keyless run
        # has its own check instead (every answer 401, tests/fuzz_keyless.py).
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks" if key else KEYLESS},
    )
    report = run.stdout + run.stderr
    assert f"Selected: {operations}/{operations}" in report, report[-3000:]
    return run.returncode, report


@pytest.fixture(scope="module", autouse=True)
def key(api: httpx.Client, mode) -> str:
    """A key with every scope: once it exists every request needs one, so the fuzz runs with it, and once
    more without it."""
    created, digest = api_keys.issue(ApiKeyCreate(name="fuzz", scopes=["submit", "operate", "read", "admin"]))
    store = backends.key_store(mode[1])
    store.setup()
    store.add(ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})), digest)
    store.close()
    wait_for(lambda: api.get("/read/stats").status_code == 401, "keys to be required", 30)
    api.headers["Authorization"] = f"Bearer {created.key}"
    return created.key


@pytest.fixture(scope="module")
def payload_schemas(api: httpx.Client) -> dict[str, dict[str, Any]]:
    types = {t["type"]: t["payload_schema"] for t in api.get("/api/job-types").json()}
    assert {"hash", "primes", "sleep", "monte_carlo_pi"} <= set(types)
    return types


def quick(schema: dict[str, Any]) -> dict[str, Any]:
    tight = copy.deepcopy(schema)
    for name, bound in QUICK.items():
        if name in tight.get("properties", {}):
            tight["properties"][name]["maximum"] = min(tight["properties"][name].get("maximum", bound), bound)
    return tight


def submissions(schemas: dict[str, dict[str, Any]], only: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """A valid submission of any registered type (or of `only`), its payload drawn from the type's JSON
    Schema: one operation per type in a small OpenAPI document, generated by schemathesis."""
    paths = {
        f"/{t}": {
            "post": {
                "requestBody": {"required": True, "content": {"application/json": {"schema": _submission(t, s)}}},
                "responses": {"202": {"description": "accepted"}},
            }
        }
        for t, s in schemas.items()
        if only in (None, t)
    }
    spec = {"openapi": "3.1.0", "info": {"title": "job submissions", "version": "1"}, "paths": paths}
    operations = [op.ok().as_strategy().map(lambda case: case.body) for op in from_dict(spec).get_all_operations()]
    return st.one_of(operations)


def _submission(job_type: str, payload_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "payload"],
        "properties": {
            "type": {"enum": [job_type]},
            "payload": quick(payload_schema),
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": QUICK_ATTEMPTS},
        },
    }


def expected_outcomes(sub: dict[str, Any]) -> set[str]:
    """A valid job of a built-in type completes, unless it was asked to fail."""
    if sub["type"] == "sleep" and sub["payload"].get("fail_probability", 0) > 0:
        return {"COMPLETED", "DEAD_LETTERED"}
    return {"COMPLETED"}


def cancel_unfinished(api: httpx.Client) -> None:
    """The gateway's fuzz submits schema-valid jobs, some of them failing on purpose and retried: cancel what
    is left unfinished, so the tests after it do not wait behind them."""

    def unfinished() -> list[str]:
        statuses = ("PENDING", "RETRYING", "RUNNING")
        return [
            j["id"] for s in statuses for j in api.get("/read/jobs", params={"status": s, "limit": 500}).json()["items"]
        ]

    def cancelled_all() -> bool:  # a page of each status at a time: the fuzz may leave more than a page
        left = unfinished()
        for job_id in left:
            assert api.post(f"/api/jobs/{job_id}/cancel").status_code in (200, 409)  # 409: it finished meanwhile
        return not left

    wait_for(cancelled_all, "the fuzz's jobs cancelled or finished", 300)


def test_the_gateway_does_what_its_openapi_document_says(api, key, tmp_path):
    try:
        code, report = conformance(api, "/api", tmp_path, key)
    finally:
        cancel_unfinished(api)
    assert code == 0, report[-6000:]


def test_the_read_model_does_what_its_openapi_document_says(api, key, tmp_path):
    code, report = conformance(api, "/read", tmp_path, key)
    assert code == 0, report[-6000:]


@pytest.mark.parametrize("prefix", ["/api", "/read"])
def test_without_a_key_every_answer_is_401_and_never_5xx(api, prefix, tmp_path):
    checks = "not_a_server_error,refused_without_a_key"
    code, report = conformance(api, prefix, tmp_path, None, checks, KEYLESS_EXAMPLES)
    assert code == 0, report[-6000:]


# One small job of each built-in type, written with the generated client's models.
EXAMPLES = {
    "hash": {"data": "abc", "rounds": 2},
    "monte_carlo_pi": {"samples": 1000, "shards": 2, "seed": 1},
    "noop": {},
    "primes": {"limit": 100},
    "sleep": {"seconds": 0},
}


def generated_models(document: dict[str, Any], folder: Path) -> ModuleType:
    """Pydantic models generated from an OpenAPI document by datamodel-code-generator, imported."""
    out = folder / "client_models.py"
    generate(
        json.dumps(document),
        input_file_type=InputFileType.OpenAPI,
        output=out,
        output_model_type=DataModelType.PydanticV2BaseModel,
        target_python_version=PythonVersion.PY_311,
        formatters=[Formatter.BUILTIN],
    )
    spec = importlib.util.spec_from_file_location("client_models", out)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the generated generics through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_a_client_generated_from_the_document_has_a_typed_payload_per_type(api, payload_schemas, tmp_path):
    client = generated_models(api.get("/api/openapi.json").json(), tmp_path)
    assert set(EXAMPLES) <= set(payload_schemas)
    ids = []
    for job_type, payload in EXAMPLES.items():
        name = "".join(part.capitalize() for part in job_type.split("_"))
        variant, payload_model = getattr(client, f"{name}Submission"), getattr(client, f"{name}Payload")
        typed = variant.model_fields["payload"].annotation  # the type's model (or it | None when optional)
        assert payload_model in (typed, *get_args(typed)), (job_type, typed)
        body = client.JobSubmission(variant(type=job_type, payload=payload_model(**payload), max_attempts=1))
        with pytest.raises(ValidationError):  # the payload is typed: another type's payload does not fit
            variant(type=job_type, payload={"limit": "many", "data": 5, "seconds": "x", "samples": "y", "bogus": 1})
        r = api.post("/api/jobs", content=body.model_dump_json(exclude_none=True), headers=JSON)
        assert r.status_code == 202, (job_type, r.text)
        ids.append(r.json()["job_id"])
    jobs = wait_for(lambda: final_jobs(api, ids), "the generated client's jobs final", 120)
    assert {j["type"]: j["status"] for j in jobs.values()} == dict.fromkeys(EXAMPLES, "COMPLETED")


def test_valid_jobs_of_every_type_are_accepted_and_reach_their_outcome(api, payload_schemas):
    submitted: list[tuple[dict[str, Any], str]] = []

    @given(sub=submissions(payload_schemas), batch=st.lists(submissions(payload_schemas), min_size=1, max_size=4))
    @JOBS
    def one(sub: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        r = api.post("/api/jobs", json=sub)
        assert r.status_code == 202, (sub, r.text)
        rb = api.post("/api/jobs/batch", json={"jobs": batch})
        assert rb.status_code == 202, (batch, rb.text)
        submitted.append((sub, r.json()["job_id"]))
        submitted.extend((b, a["job_id"]) for b, a in zip(batch, rb.json()["accepted"], strict=True))

    one()

    assert {s["type"] for s, _ in submitted} >= set(payload_schemas)
    jobs = wait_for(lambda: final_jobs(api, [i for _, i in submitted]), "every fuzzed job final", 300)
    for sub, job_id in submitted:
        assert jobs[job_id]["status"] in expected_outcomes(sub), (sub, jobs[job_id])


def test_invalid_payloads_are_422_naming_the_field(api, payload_schemas):
    @given(data=st.data())
    @JOBS
    def one(data: st.DataObject) -> None:
        job_type = data.draw(st.sampled_from(sorted(t for t, s in payload_schemas.items() if s.get("properties"))))
        schema = payload_schemas[job_type]
        payload = data.draw(submissions(payload_schemas, only=job_type))["payload"]
        field = data.draw(st.sampled_from(sorted(schema["properties"])))
        bound = schema["properties"][field].get("maximum")
        bad = WRONG_TYPE if bound is None else st.one_of(WRONG_TYPE, st.just(bound + 1))
        payload[field] = data.draw(bad)

        r = api.post("/api/jobs", json={"type": job_type, "payload": payload})

        assert r.status_code == 422, (job_type, payload, r.text)
        assert r.json()["error"]["details"][0]["loc"][:3] == ["body", "payload", field], r.text

    one()


def test_after_fuzzing_the_stats_from_the_cache_equal_the_job_store(api, truth):
    # Anything the operation fuzz started is cancelled, so every job is final when the stats are compared.
    for status in ("PENDING", "RETRYING", "RUNNING"):  # every page: the fuzz submits well over one page of jobs
        cursor = None
        while True:
            page = truth.jobs.list(JobStatus(status), None, 500, cursor)
            for job in page.items:
                api.post(f"/api/jobs/{job.id}/cancel")
            if (cursor := page.next_cursor) is None:
                break
    assert sum(truth.jobs.counts()[0].values()) >= JOB_EXAMPLES, "the fuzz created too few jobs to compare"

    def agree() -> dict[str, Any] | None:
        got = stats_match_the_store(api, truth)
        return got if got and not got["running"] and not got["pending"] and not got["retrying"] else None

    wait_for(agree, "the cache to agree with the job store", 180)
