"""The hot path of `POST /api/jobs`: a well-formed single submit answered without FastAPI's routing.

A single submit is the request a client sends most, and on two cores FastAPI's share of it (the exception
and exit-stack middlewares, the router, the dependencies, the Request object, the response model) cost more
CPU than the gateway's own work. `FastSubmit` sits inside the other middlewares (metrics, body limit,
`KeyFirst`'s key check and CORS still apply) and answers a submission itself when everything about it is
plain: `Content-Type: application/json` (any parameters; `+json` types go to the route), a principal that
`KeyFirst` already knew and that holds the submit scope, a valid `X-Correlation-Id` or none (these checked
before the body is read), and a body that `JobSubmission` accepts. Anything else is handed on to FastAPI's
route, with whatever body was read replayed, so the answers to bad requests (the route's 400, 403 and 422,
a 413 while a body streams in) come from where they always did. Once a submission is taken, its errors (429,
503, a payload the job type refuses) get the app's own exception handlers' answers; an unexpected one is
answered 500 and raised again, as Starlette does, for the server to log. FastAPI's route stays the
documented one (OpenAPI).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import JobSubmission
from observatory.access import Guard, Principal
from observatory.errors import Forbidden
from observatory.submission import Accepted
from serve_app.auth import PRINCIPAL
from serve_app.http import app_path, exception_response

Accept = Callable[[Principal, JobSubmission, str | None], Awaitable[Accepted]]
PATH = "/jobs"
SCOPES = ("submit",)  # what a submitting key must hold, here and in the route's dependency
# The X-Correlation-Id header's rules, here and in the route's declaration of it: printable ASCII, no spaces.
CORRELATION_ID_PATTERN = r"^[\x21-\x7e]+$"
CORRELATION_ID_MAX = 128
_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN)
JSON = b"application/json"


@dataclass(frozen=True)
class _Route:
    """What `RequestMetrics` reads from the scope's route: the template it labels requests with."""

    path: str = PATH


ROUTE = _Route()
_accept: Accept | None = None


def install(accept: Accept) -> None:
    """This replica's submit (validate, admit, group commit, count): the gateway calls it at start. Module
    level, as `auth.install`: Serve pickles the middleware by reference, so it finds what this replica set."""
    global _accept
    _accept = accept


@dataclass
class _Head:
    """What the headers and the scope say about a submission the fast path may take."""

    principal: Principal
    correlation_id: str | None


def _head(scope: Scope) -> _Head | None:
    """None when the request's headers or key already need FastAPI's route (checked before the body is read)."""
    principal = scope.get(PRINCIPAL)
    if principal is None:  # the route's dependency looks the key up
        return None
    try:
        Guard.allow(principal, SCOPES)
    except Forbidden:  # the route's 403
        return None
    content_type, correlation_id = None, None
    for name, value in scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"x-correlation-id" and correlation_id is None:
            correlation_id = value.decode("latin-1")
    if content_type is None or content_type.partition(b";")[0].strip().lower() != JSON:
        return None
    if correlation_id is not None and (
        len(correlation_id) > CORRELATION_ID_MAX or _CORRELATION_ID.fullmatch(correlation_id) is None
    ):
        return None
    return _Head(principal, correlation_id)


def _submission(body: bytes) -> JobSubmission | None:
    try:
        return JobSubmission.model_validate_json(body)
    except ValidationError:  # the route's 400 or 422 names the field
        return None


class FastSubmit:
    """ASGI middleware: `POST /jobs` (below the app's root path) answered here when it is plain."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = _accept
        if accept is None or scope["type"] != "http" or scope["method"] != "POST" or app_path(scope) != PATH:
            await self.app(scope, receive, send)
            return
        head = _head(scope)
        if head is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        try:
            body = await _body(receive, read)
        except Exception as e:  # the body limit's 413: the route answers it as it always does
            await self.app(scope, _replay(read, receive, e), send)
            return
        submission = None if body is None else _submission(body)
        if submission is None:  # not valid, or the client went away: the route answers it
            await self.app(scope, _replay(read, receive), send)
            return
        scope["route"] = ROUTE
        try:
            accepted = await accept(head.principal, submission, head.correlation_id)
        except Exception as e:
            await exception_response(Request(scope, receive), e, send)
            return
        await _answer(accepted, send)


async def _body(receive: Receive, read: list[Message]) -> bytes | None:
    """The whole request body, every message kept in `read`; None when the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(read: list[Message], receive: Receive, failure: Exception | None = None) -> Receive:
    """A receive that gives the messages already read again, then raises `failure` or goes on receiving."""
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if failure is not None:
            raise failure
        return await receive()

    return replay


async def _answer(accepted: Accepted, send: Send) -> None:
    """The route's answer: 202 (200 for a repeated idempotency key), the JobAccepted body, X-Correlation-Id."""
    body = accepted.body.model_dump_json().encode()
    headers = [
        (b"content-type", JSON),
        (b"content-length", str(len(body)).encode()),
        (b"x-correlation-id", accepted.body.correlation_id.encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": 202 if accepted.created else 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
