"""The read-model application (route prefix /read): jobs, events and stats."""

# No `from __future__ import annotations` here: FastAPI must see real types on the Serve ingress methods.

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import ray
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from ray import serve
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import (
    AlertList,
    AlertmanagerWebhook,
    DeadLetterPage,
    ErrorResponse,
    EventEnvelope,
    Job,
    JobPage,
    JobStatus,
    QueueInfo,
    Severity,
    Stats,
    StreamSnapshot,
    WorkersStatus,
    WorkersView,
)
from contracts.models import NO_NUL
from observatory import __version__, backends, logs
from observatory.alerting import Watch
from observatory.errors import BackendUnavailable, CacheUnavailable, JobNotFound, Unauthorized
from observatory.healing import Healer
from observatory.paging import CURSOR_DESCRIPTION, CURSOR_PATTERN
from observatory.settings import get_settings
from observatory.topology import QUEUES
from serve_app import auth
from serve_app import stream as live
from serve_app.http import ERROR_RESPONSES, install_error_handlers, readiness

RECENT = 20
WORKERS_APP, WORKERS_DEPLOYMENT = "workers", "Workers"
WORKERS_TIMEOUT_S = 2.0  # the workers app answers from memory: longer than this means it is not there
log = logging.getLogger(__name__)


class WorkersUnavailable(BackendUnavailable):
    """The workers app (Serve application `workers`) cannot tell its status: 503 like any backend down."""

    backend = "workers app"


async def _closing(stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """Close the hub's generator when the response ends, however it ends (its `finally` unsubscribes)."""
    async with contextlib.aclosing(stream) as s:  # type: ignore[type-var]
        async for chunk in s:
            yield chunk


api = FastAPI(
    title="Observatory read model",
    version=__version__,
    description="Read jobs, their events and aggregate stats. `GET /read/stream` is a server-sent event stream "
    "(`text/event-stream`) of the overview: at most one `snapshot` event per second (a StreamSnapshot: stats, "
    "alerts, the newest jobs, queues, throughput and failure rate over 15 minutes), an `unavailable` event while "
    "a backend is down, a keep-alive comment every 15 s, and `retry: 2000` so a browser's EventSource "
    "reconnects by itself. Every open stream receives the same snapshot, computed once per second.",
    responses=ERROR_RESPONSES,
)
auth.protect(
    api, own={"/alerts/webhook": auth.check_webhook_secret}
)  # inside the error handlers' middleware: 401s are counted too
install_error_handlers(api, "read")
auth.add_cors(api, get_settings())
READ = [auth.require("read")]

JobId = Annotated[UUID, Path(description="The job_id returned at submission.")]
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_DESCRIPTION)]


WEBHOOK_REALM = 'Bearer realm="alerts-webhook"'
WEBHOOK_AUTH = HTTPBearer(auto_error=False, description="The shared secret OBSERVATORY_WEBHOOK_SECRET.")


def webhook_secret(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(WEBHOOK_AUTH)]) -> None:
    """401 unless the request carries the webhook's shared secret (KeyFirst checked it before the body)."""
    try:
        auth.check_webhook_secret(credentials.credentials if credentials else None)
    except Unauthorized as e:
        raise StarletteHTTPException(401, str(e), headers={"WWW-Authenticate": WEBHOOK_REALM}) from None


@serve.deployment(name="ReadModel")
@serve.ingress(api)
class ReadModel:
    def __init__(self) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        self._b = backends.build(settings)
        self._using = backends.describe(settings)
        self._b.setup()
        auth.install(settings)
        self._healer = Healer(self._b)
        self._healer.start()
        self._watch = Watch(self._b, lambda: self._healer.diverged)
        self._series = live.RateSeries()
        self._hub = live.Hub(self._snapshot)
        self._sampler = threading.Thread(target=self._sample, name="rate-sampler", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        """Feed the throughput chart every 10 s, whether or not a page is open."""
        while True:
            try:
                self._series.add(self._stats(), time.monotonic(), live.now())
            except Exception as e:  # a backend down: a gap in the chart, nothing more
                log.warning("rate sample skipped: %s", e)
            time.sleep(live.POINT_EVERY_S)

    def _stats(self) -> Stats:
        try:  # the cache, unless it is incomplete (then None) or disagrees with the store
            cached = None if self._healer.diverged else self._b.counters.stats()
        except CacheUnavailable:
            cached = None
        if cached is not None:
            return cached
        counts, last = self._b.jobs.counts()
        return Stats.from_counts(counts, last, "store")

    def _queues(self) -> list[QueueInfo]:
        try:
            return [QueueInfo(name=q, depth=self._b.bus.depth(q), consumers=self._b.bus.consumers(q)) for q in QUEUES]
        except BackendUnavailable:
            return []

    def _snapshot(self) -> StreamSnapshot:
        return StreamSnapshot(
            at=live.now(),
            stats=self._stats(),
            alerts=self._alerts().alerts,
            recent=self._b.jobs.list(None, None, RECENT, None).items,
            queues=self._queues(),
            series=self._series.points(),
        )

    @api.get(
        "/stream",
        dependencies=READ,
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events: see above"}},
    )
    async def stream(self) -> StreamingResponse:
        """The live overview as server-sent events (see the description at the top)."""
        return StreamingResponse(
            _closing(self._hub.subscribe()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.get("/find", dependencies=READ, response_model=list[Job])
    async def find(
        self,
        key: Annotated[
            str,
            Query(
                min_length=1, max_length=256, pattern=NO_NUL, description="job id, correlation id or idempotency key"
            ),
        ],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[Job]:
        """Jobs whose id, correlation id or idempotency key equals `key`, newest first."""
        return await run_in_threadpool(self._b.jobs.find, key, limit)

    @api.get("/stats", dependencies=READ, response_model=Stats)
    async def stats(self) -> Stats:
        return await run_in_threadpool(self._stats)

    @api.get("/jobs", dependencies=READ, response_model=JobPage)
    async def jobs(
        self,
        status: JobStatus | None = None,
        type: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,  # noqa: A002 - the API's name
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Cursor = None,
    ) -> JobPage:
        return await run_in_threadpool(self._b.jobs.list, status, type, limit, cursor)

    @api.get("/jobs/recent", dependencies=READ, response_model=JobPage)
    async def recent(self) -> JobPage:
        return await run_in_threadpool(self._b.jobs.list, None, None, RECENT, None)

    def _job_view(self, job_id: UUID) -> Job:
        job = self._b.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job.model_copy(update={"attempt_history": self._b.jobs.attempts(job_id)})

    @api.get("/jobs/{job_id}", dependencies=READ, response_model=Job)
    async def job(self, job_id: JobId) -> Job:
        """The job with its attempts (number, worker, start, end, error)."""
        return await run_in_threadpool(self._job_view, job_id)

    @api.get("/dlq", dependencies=READ, response_model=DeadLetterPage)
    async def dlq(
        self,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Cursor = None,
    ) -> DeadLetterPage:
        """Dead letters, newest first: jobs out of attempts, and messages that could not be processed."""
        return await run_in_threadpool(self._b.jobs.dead_letters, limit, cursor)

    @api.get("/jobs/{job_id}/events", dependencies=READ, response_model=list[EventEnvelope])
    async def events(self, job_id: JobId) -> list[EventEnvelope]:
        if await run_in_threadpool(self._b.jobs.get, job_id) is None:
            raise JobNotFound(job_id)
        return await run_in_threadpool(self._b.events.for_job, job_id)

    def _workers(self) -> WorkersView:
        try:
            handle = serve.get_deployment_handle(WORKERS_DEPLOYMENT, app_name=WORKERS_APP)
        except KeyError:
            raise WorkersUnavailable(f"the Serve application `{WORKERS_APP}` is not deployed") from None
        response = handle.status.remote()
        try:
            answer = response.result(timeout_s=WORKERS_TIMEOUT_S)
        except TimeoutError:
            response.cancel()
            raise WorkersUnavailable(f"no answer within {WORKERS_TIMEOUT_S:g} s (starting, or down)") from None
        except Exception as e:  # the replica died under the call, or Serve refused it
            raise WorkersUnavailable(f"{type(e).__name__}: {e}") from None
        try:
            status = WorkersStatus.model_validate(answer)
        except ValidationError as e:  # another release of the workers app, in the middle of an upgrade
            raise WorkersUnavailable(f"its status is not a WorkersStatus ({e.error_count()} errors)") from None
        return WorkersView.from_ray(ray.nodes(), status)

    @api.get("/workers", dependencies=READ, response_model=WorkersView)
    async def workers(self) -> WorkersView:
        """Ray's nodes (address, alive, head, total resources, the actors on each) and the workers app's
        processors and aggregators (node, pid, state, jobs in flight, handled, restarts, last seen), desired
        and alive processor counts, as of the workers app's last check (every `check_interval_s`). 503 when
        the workers app cannot answer within 2 s (not deployed, starting or down)."""
        return await run_in_threadpool(self._workers)

    def _alerts(self) -> AlertList:
        try:
            pushed = self._b.counters.alerts()
        except CacheUnavailable:
            pushed = []
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
        alerts = sorted([*pushed, *self._watch.evaluate()], key=lambda a: (order[a.severity], a.since))
        return AlertList(alerts=alerts)

    @api.get("/alerts", dependencies=READ, response_model=AlertList)
    async def alerts(self) -> AlertList:
        """Active alerts: from Alertmanager (source `alertmanager`) and the read model's own checks
        (source `read-model`), critical first."""
        return await run_in_threadpool(self._alerts)

    @api.post(
        "/alerts/webhook",
        responses={401: {"model": ErrorResponse, "description": "Missing or wrong webhook secret"}},
    )
    async def alerts_webhook(
        self, hook: AlertmanagerWebhook, _: Annotated[None, Depends(webhook_secret)]
    ) -> dict[str, int]:
        """Alertmanager's webhook receiver (see observability/alertmanager.yml): only requests carrying the
        shared secret `OBSERVATORY_WEBHOOK_SECRET` as `Authorization: Bearer …` are taken."""
        firing = {a.fingerprint: a.to_alert() for a in hook.alerts if a.status == "firing"}
        resolved = [a.fingerprint for a in hook.alerts if a.status == "resolved"]
        await run_in_threadpool(self._b.counters.set_alerts, firing, resolved)
        return {"firing": len(firing), "resolved": len(resolved)}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        # Redis is not required: stats fall back to PostgreSQL when it is down.
        return await readiness({"jobs": self._b.jobs.ping, "events": self._b.events.ping}, self._using)


app = ReadModel.bind()
