"""The single-submit fast path: plain submissions are answered beside FastAPI's route, everything else reaches
the route with its body intact, and errors after a submission is taken get the app's error answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Header, Response
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import JobAccepted, JobStatus, JobSubmission
from observatory.access import Principal
from observatory.errors import InvalidSubmission, Overloaded, RateLimited
from observatory.submission import Accepted
from serve_app import fast_submit
from serve_app.auth import PRINCIPAL
from serve_app.http import install_error_handlers

SUBMITTER = Principal("k1", frozenset({"submit"}))
JSON = b"application/json"
JOB = {"type": "noop", "payload": {"x": 1}, "max_attempts": 2}


ROUTES: list[str] = []  # the route template each request was counted under (RequestMetrics reads the same)


class SetPrincipal:
    """Stands in for KeyFirst: the principal named by the test's own header, when there is one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scopes = dict(scope.get("headers", [])).get(b"x-test-scopes")
        if scopes is not None:
            scope[PRINCIPAL] = Principal("k1", frozenset(scopes.decode().split(",")))
        await self.app(scope, receive, send)
        ROUTES.append(getattr(scope.get("route"), "path", "unmatched"))


class Taken:
    """The gateway's accept, as the fast path sees it: records each call, answers or raises as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Principal, JobSubmission, str | None]] = []
        self.created, self.error = True, None

    async def __call__(self, principal: Principal, submission: JobSubmission, correlation_id: str | None) -> Accepted:
        self.calls.append((principal, submission, correlation_id))
        if self.error is not None:
            raise self.error
        body = JobAccepted(
            job_id=uuid.uuid4(), event_id=uuid.uuid4(), status=JobStatus.PENDING, correlation_id=correlation_id or "gen"
        )
        return Accepted(body, self.created)


@pytest.fixture
def taken() -> Iterator[Taken]:
    taken = Taken()
    fast_submit.install(taken)
    yield taken
    fast_submit._accept = None


def client(raise_server_exceptions: bool = True) -> TestClient:
    api = FastAPI()

    @api.post("/jobs", status_code=202)
    async def route(
        submission: JobSubmission,
        response: Response,
        correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id", max_length=128)] = None,
    ) -> dict[str, Any]:
        response.headers["X-Route"] = "fastapi"
        return {"type": submission.type, "correlation_id": correlation_id}

    @api.get("/jobs")
    async def listing() -> list[str]:
        return []

    api.add_middleware(fast_submit.FastSubmit)
    api.add_middleware(SetPrincipal)
    install_error_handlers(api, "test")
    return TestClient(api, raise_server_exceptions=raise_server_exceptions)


def post(body: Any = JOB, scopes: str | None = "submit", raising: bool = True, **headers: str) -> Any:
    sent = dict(headers)
    if scopes is not None:
        sent["x-test-scopes"] = scopes
    return client(raising).post("/jobs", json=body, headers=sent)


def test_a_plain_submission_is_answered_beside_the_route(taken: Taken):
    r = post(**{"X-Correlation-Id": "trace-1"})
    assert r.status_code == 202 and "x-route" not in r.headers
    assert r.headers["x-correlation-id"] == "trace-1" and r.headers["content-type"] == "application/json"
    answer = JobAccepted.model_validate_json(r.content)
    assert answer.correlation_id == "trace-1" and answer.status == JobStatus.PENDING
    [(principal, submission, correlation_id)] = taken.calls
    assert principal == SUBMITTER and correlation_id == "trace-1"
    assert submission == JobSubmission.model_validate(JOB)
    assert ROUTES[-1] == "/jobs"  # counted under the route's own template


def test_a_repeated_idempotency_key_answers_200(taken: Taken):
    taken.created = False
    r = post()
    assert r.status_code == 200 and r.json()["correlation_id"] == "gen"


@pytest.mark.parametrize(
    ("body", "scopes", "headers"),
    [
        ({"type": "noop", "max_attempts": 0}, "submit", {}),  # the route's 422 names the field
        ({"payload": {}}, "submit", {}),
        (JOB, None, {}),  # KeyFirst did not know the key: the route's dependency checks it
        (JOB, "read", {}),  # no submit scope: the route's dependency answers it (403 in the gateway)
        (JOB, "submit", {"X-Correlation-Id": "x" * 129}),
        (JOB, "submit", {"X-Correlation-Id": "with space"}),
        (JOB, "submit", {"Content-Type": "text/plain"}),
    ],
)
def test_anything_not_plain_reaches_the_route_with_its_body(
    taken: Taken, body: Any, scopes: str | None, headers: dict[str, str]
):
    r = post(body, scopes, **headers)
    assert taken.calls == []
    if r.status_code == 202:  # the route took it: it saw the same body
        assert r.headers["x-route"] == "fastapi" and r.json()["type"] == "noop"
    else:
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
        assert r.json()["error"]["details"]


def test_the_route_reads_a_replayed_body_exactly_once(taken: Taken):
    r = post(scopes=None, **{"X-Correlation-Id": "t2"})
    assert r.status_code == 202 and r.headers["x-route"] == "fastapi"
    assert r.json() == {"type": "noop", "correlation_id": "t2"} and taken.calls == []


def test_malformed_json_gets_the_routes_400(taken: Taken):
    r = client().post(
        "/jobs", content=b"{not json", headers={"content-type": "application/json", "x-test-scopes": "submit"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request" and taken.calls == []


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (RateLimited("over the key's rate", 2.5), 429, "3"),
        (Overloaded("too many jobs waiting", 1.0), 503, "1"),
        (InvalidSubmission("payload refused", [(["body", "payload", "x"], "not allowed")]), 422, None),
        (RuntimeError("boom"), 500, None),
    ],
)
def test_errors_after_the_submission_is_taken_get_the_apps_answers(
    taken: Taken, error: Exception, status: int, retry_after: str | None
):
    taken.error = error
    r = post(raising=False)
    assert r.status_code == status and len(taken.calls) == 1 and "x-route" not in r.headers
    assert r.json()["error"]["message"] == ("internal error; see the server logs" if status == 500 else str(error))
    assert r.headers.get("retry-after") == retry_after


def test_an_unexpected_error_is_answered_500_and_raised_again_for_the_server_to_log(taken: Taken):
    taken.error = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        post()


@pytest.mark.parametrize(
    ("content_type", "fast"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/vnd.observatory+json", False),  # the route parses +json types: it answers them
        (None, False),
        ("", False),
    ],
)
def test_only_application_json_takes_the_fast_path(taken: Taken, content_type: str | None, fast: bool):
    headers = {"x-test-scopes": "submit"} | ({} if content_type is None else {"content-type": content_type})
    r = client(raise_server_exceptions=False).post("/jobs", content=b'{"type": "noop"}', headers=headers)
    assert (len(taken.calls) == 1) is fast and ("x-route" in r.headers) is (r.status_code == 202 and not fast)


def test_a_client_gone_while_its_body_streams_in_reaches_the_route(taken: Taken):
    seen: list[Message] = []

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend([await receive(), await receive()])

    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"type":', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return chunks.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/jobs", "headers": [(b"content-type", JSON)]}
    asyncio.run(fast_submit.FastSubmit(route)(scope | {PRINCIPAL: SUBMITTER}, receive, _never))
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"] and taken.calls == []


def test_other_methods_and_paths_pass_through(taken: Taken):
    c = client()
    assert c.get("/jobs").json() == [] and c.post("/jobs/other", json=JOB).status_code == 404
    assert taken.calls == []


def test_without_an_installed_gateway_the_route_answers():
    r = post()
    assert r.status_code == 202 and r.headers["x-route"] == "fastapi"


def test_a_body_that_fails_while_streaming_fails_in_the_route(taken: Taken):
    """BodyLimit raises its 413 from receive: the fast path hands the failure to the route, in order."""
    seen: list[Any] = []

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        try:
            await receive()
        except ValueError as e:
            seen.append(e)

    chunks: list[Message] = [{"type": "http.request", "body": b'{"type":', "more_body": True}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop(0)
        raise ValueError("over the limit")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/jobs",
        "headers": [(b"content-type", JSON)],
        PRINCIPAL: SUBMITTER,
    }
    asyncio.run(fast_submit.FastSubmit(route)(scope, receive, _never))
    assert seen[0]["body"] == b'{"type":' and isinstance(seen[1], ValueError) and taken.calls == []


async def _never(message: Message) -> None:
    raise AssertionError(f"the fast path answered: {message}")


def test_the_gateway_puts_the_fast_path_inside_the_key_check():
    """Innermost: KeyFirst has set the principal, and the body limit and metrics wrap it, as they wrap the route."""
    from serve_app.auth import KeyFirst
    from serve_app.gateway import api
    from serve_app.http import BodyLimit, RequestMetrics

    order = [m.cls for m in api.user_middleware]  # outermost first
    assert order[-2:] == [KeyFirst, fast_submit.FastSubmit]
    assert order.index(RequestMetrics) < order.index(BodyLimit) < order.index(KeyFirst)
