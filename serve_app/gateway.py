"""The gateway application (route prefix /api): validates and accepts jobs."""

# No `from __future__ import annotations` here: FastAPI must see real types on the Serve ingress methods.

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI, Header, Path, Response
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    BatchAccepted,
    BatchSubmission,
    ErrorResponse,
    Job,
    JobAccepted,
    JobSubmission,
    JobTypeInfo,
)
from observatory import __version__, backends, gc_tuning, logs
from observatory import keys as api_keys
from observatory.access import Admission, Principal
from observatory.errors import InvalidSubmission, JobConflict, RateLimited
from observatory.events import producer
from observatory.grouping import GroupCommit
from observatory.jobs import default_registry
from observatory.late_marks import LateMarks
from observatory.metrics import metrics
from observatory.ports import NewJob
from observatory.settings import get_settings
from observatory.submission import Accepted, SubmissionService
from serve_app import auth, fast_submit
from serve_app.http import ERROR_RESPONSES, install_error_handlers, readiness
from serve_app.openapi import typed_submissions

# Submissions run on a small dedicated pool: it bounds the pika connections (one per thread) and
# keeps blocking store and broker calls off the event loop.
SUBMIT_THREADS = 8
GROUP_MAX = 256  # single submits per group commit
GROUP_THREADS = 2  # one group commits while the next one forms
STOP_TIMEOUT_S = 5.0  # how long a stopping replica waits for the groups its workers hold
MARK_DELAY_S = 1.0  # at most a quarter of OBSERVATORY_SWEEP_AFTER_S

api = FastAPI(
    title="Observatory gateway",
    version=__version__,
    description="Submit jobs to the Distributed Task Observatory.",
    responses=ERROR_RESPONSES,
)
api.add_middleware(fast_submit.FastSubmit)  # innermost: the key check, body limit and metrics run first
auth.protect(api)  # inside the error handlers' middleware: 401s are counted too
install_error_handlers(api, "gateway")
auth.add_cors(api, get_settings())
typed_submissions(api, default_registry())

Single = tuple[Principal, list[NewJob], str | None]  # one single submit in a group: who, the job, correlation id
JobId = Annotated[UUID, Path(description="The job_id returned at submission.")]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The key's id (its public prefix).")]
Submitter = Annotated[Principal, auth.require(*fast_submit.SCOPES)]
Operator = Annotated[Principal, auth.require("operate")]
Admin = Annotated[Principal, auth.require("admin")]
LIMITED = {429: {"model": ErrorResponse, "description": "Over the key's rate limit (see Retry-After)"}}
CorrelationId = Annotated[
    str | None,
    Header(
        alias="X-Correlation-Id",
        max_length=fast_submit.CORRELATION_ID_MAX,
        pattern=fast_submit.CORRELATION_ID_PATTERN,
        description="Tracing id; echoed back, and generated when absent.",
    ),
]

# OpenAPI links: what a client (or a stateful fuzzer) can do next with the job_id of an accepted job.
JOB_LINKS = {
    op: {"operationId": op, "parameters": {"job_id": "$response.body#/job_id"}} for op in ("cancel_job", "requeue_job")
}


@serve.deployment(name="Gateway")
@serve.ingress(api)
class Gateway:
    def __init__(self) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        gc_tuning.tune()  # a hot path: see observatory.gc_tuning
        self._backends = backends.build(settings, pool_size=SUBMIT_THREADS + GROUP_THREADS + 2)
        self._using = backends.describe(settings)
        self._backends.setup()
        self._keys = auth.install(settings)
        self._admission = Admission(settings, self._backends.counters, self._backends.jobs)
        self._registry = default_registry()
        self._types = self._job_types()
        # Published marks go late, in one UPDATE a second, off the answer's path (see observatory.late_marks).
        self._marks = LateMarks(self._mark_late, min(MARK_DELAY_S, settings.sweep_after_s / 4))
        self._service = SubmissionService(
            self._backends.jobs,
            self._backends.bus,
            self._registry,
            producer("gateway", settings.instance_id),
            mark=self._marks.add,
        )
        self._pool = ThreadPoolExecutor(max_workers=SUBMIT_THREADS, thread_name_prefix="submit")
        # Concurrent single submits share one transaction and one publish (group commit); their admission
        # (backlog bound, rate limit) runs on the group's thread too: no extra thread hop per request.
        self._singles: GroupCommit[Single, list[Accepted]] = GroupCommit(
            self._submit_singles,
            GROUP_MAX,
            GROUP_THREADS,
            "submit-group",
            alone_on=(InvalidSubmission,),
            admit=self._admit_singles,
            linger_s=settings.group_linger_s,
            gap_s=settings.group_gap_s,
        )
        fast_submit.install(self._accept)

    def __del__(self) -> None:
        """Serve calls this as the replica stops, after its requests drained: the group commit's workers stop
        (a request that came too late is answered 503), then the pending marks go (lost, they cost duplicates
        only)."""
        singles: GroupCommit[Single, list[Accepted]] | None = getattr(self, "_singles", None)  # None: __init__ failed
        if singles is not None:
            singles.stop(timeout=STOP_TIMEOUT_S)
        marks: LateMarks | None = getattr(self, "_marks", None)
        if marks is not None:
            marks.stop()

    def _mark_late(self, job_ids: list[UUID]) -> None:
        self._backends.jobs.mark_published(job_ids, first_run_only=True)

    def _validate(self, submissions: list[JobSubmission], batch: bool) -> list[NewJob]:
        try:
            return self._service.validate(submissions, batch=batch)
        except InvalidSubmission:
            for sub in submissions:
                metrics().submitted(sub.type, "rejected")
            raise

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _refusals(self, requests: Sequence[tuple[Principal, int]]) -> list[RateLimited | None]:
        """Admission of each (principal, jobs): None or why not (429/503); refusals and the backlog counted."""
        try:
            refusals = self._admission.admit_many(requests)
        finally:
            metrics().backlog(self._admission.unfinished)
        for (_, n), refusal in zip(requests, refusals, strict=True):
            if refusal is not None:
                metrics().refused(type(refusal).__name__, n)
        return refusals

    async def _admit(self, principal: Principal, submissions: list[JobSubmission]) -> None:
        [refusal] = await self._call(self._refusals, [(principal, len(submissions))])
        if refusal is not None:
            raise refusal

    def _admit_singles(self, singles: Sequence[Single]) -> list[RateLimited | None]:
        return self._refusals([(principal, len(new)) for principal, new, _ in singles])

    def _submit_singles(self, singles: Sequence[Single]) -> list[list[Accepted]]:
        return self._service.submit_many([(new, correlation_id) for _, new, correlation_id in singles])

    async def _accept(self, principal: Principal, submission: JobSubmission, correlation_id: str | None) -> Accepted:
        """One single submit, validated, admitted and committed with its group; counted. Also the fast path's
        (see serve_app.fast_submit), which answers most single submits without this route."""
        new = self._validate([submission], batch=False)
        [accepted] = await asyncio.wrap_future(self._singles.submit((principal, new, correlation_id)))
        metrics().submitted(submission.type, "accepted" if accepted.created else "duplicate")
        return accepted

    @api.post(
        "/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses={
            200: {"model": JobAccepted, "description": "Repeated idempotency key", "links": JOB_LINKS},
            202: {"description": "Accepted", "links": JOB_LINKS},
            **LIMITED,
        },
    )
    async def submit(
        self,
        submission: JobSubmission,
        response: Response,
        principal: Submitter,
        correlation_id: CorrelationId = None,
    ) -> JobAccepted:
        accepted = await self._accept(principal, submission, correlation_id)
        response.status_code = 202 if accepted.created else 200
        response.headers["X-Correlation-Id"] = accepted.body.correlation_id
        return accepted.body

    @api.post("/jobs/batch", status_code=202, response_model=BatchAccepted, responses=LIMITED)
    async def submit_batch(
        self, batch: BatchSubmission, response: Response, principal: Submitter, correlation_id: CorrelationId = None
    ) -> BatchAccepted:
        new = self._validate(batch.jobs, batch=True)
        await self._admit(principal, batch.jobs)
        accepted = await self._call(self._service.submit, new, correlation_id)
        for sub, a in zip(batch.jobs, accepted, strict=True):
            metrics().submitted(sub.type, "accepted" if a.created else "duplicate")
        response.headers["X-Correlation-Id"] = accepted[0].body.correlation_id
        return BatchAccepted(accepted=[a.body for a in accepted])

    @api.post(
        "/jobs/{job_id}/cancel",
        operation_id="cancel_job",
        response_model=Job,
        responses={409: {"model": ErrorResponse}},
    )
    async def cancel(self, job_id: JobId, _: Operator) -> Job:
        """Cancel a PENDING, RETRYING or RUNNING job (a running handler is stopped); 409 when already final."""
        return await self._call(self._service.cancel, job_id)

    @api.post(
        "/dlq/{job_id}/requeue",
        operation_id="requeue_job",
        response_model=Job,
        responses={409: {"model": ErrorResponse}},
    )
    async def requeue(self, job_id: JobId, _: Operator) -> Job:
        """Run a dead-lettered job again with a fresh set of attempts; 409 when it is not dead-lettered."""
        return await self._call(self._service.requeue, job_id)

    @api.get("/job-types", response_model=list[JobTypeInfo], dependencies=[auth.require("submit", "read")])
    async def job_types(self) -> list[JobTypeInfo]:
        return self._types

    def _job_types(self) -> list[JobTypeInfo]:
        """What `GET /api/job-types` answers: built once (the registry is fixed), not on the event loop per call."""
        return [
            JobTypeInfo(
                type=t.name,
                description=t.description,
                payload_schema=t.payload_model.model_json_schema(),
                resources=t.resources,
                max_resources=t.max_resources,
            )
            for t in self._registry
        ]

    @api.post("/keys", status_code=201, response_model=ApiKeyCreated, responses={409: {"model": ErrorResponse}})
    async def create_key(self, request: ApiKeyCreate, _: Admin) -> ApiKeyCreated:
        """A new API key, shown only in this answer (scope admin)."""
        created, stored = api_keys.issue(request)
        info = ApiKeyInfo.model_validate(created.model_dump(exclude={"key"}))
        if not await self._call(self._keys.add, info, stored):  # a 48-bit id taken: vanishingly rare
            raise JobConflict(f"key id {info.id} is taken; ask again for a new key")
        return created

    @api.get("/keys", response_model=list[ApiKeyInfo])
    async def list_keys(self, _: Admin) -> list[ApiKeyInfo]:
        """Every key without its secret: name, scopes, created, last used, expiry, revoked (scope admin)."""
        return await self._call(self._keys.list)

    @api.delete("/keys/{key_id}", response_model=ApiKeyInfo)
    async def revoke_key(self, key_id: KeyId, _: Admin) -> ApiKeyInfo:
        """Revoke a key: within a few seconds every replica refuses it with 401 (scope admin)."""
        info = await self._call(self._keys.revoke, key_id)
        if info is None:
            raise StarletteHTTPException(404, f"no API key {key_id}")
        return info

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        return await readiness({"bus": self._backends.bus.ping, "jobs": self._backends.jobs.ping}, self._using)


app = Gateway.bind()
