"""What both HTTP apps share: JSON error bodies for every failure, and readiness checks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import ErrorBody, ErrorDetail, ErrorResponse
from observatory.errors import (
    BackendUnavailable,
    Forbidden,
    InvalidSubmission,
    JobConflict,
    JobNotFound,
    Overloaded,
    RateLimited,
    Unauthorized,
)
from observatory.metrics import metrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # larger request bodies get 413

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Malformed request"),
        (401, "No usable API key (missing, unknown, revoked or expired)"),
        (403, "The API key lacks the scope this endpoint needs"),
        (404, "Not found"),
        (413, "Request body larger than 1 MiB"),
        (422, "Invalid input"),
        (503, "A backend is unavailable, or too many jobs are waiting (see Retry-After)"),
    )
}

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int,
    message: str,
    details: list[tuple[list[str | int], str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(
            code=_CODES.get(status, "error"),
            message=message,
            details=[ErrorDetail(loc=list(loc), msg=msg) for loc, msg in details or []],
        )
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _loc(raw: tuple[Any, ...] | list[Any]) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in raw]


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    details = [(_loc(e["loc"]), e["msg"]) for e in errors]
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "request body is not valid JSON", details)
    return error_response(422, "request validation failed", details)


async def _invalid(_: Request, exc: InvalidSubmission) -> JSONResponse:
    return error_response(422, str(exc), exc.details)


async def _not_found(_: Request, exc: JobNotFound) -> JSONResponse:
    return error_response(404, str(exc), [(["path", "job_id"], str(exc))])


async def _conflict(_: Request, exc: JobConflict) -> JSONResponse:
    return error_response(409, str(exc), [(["path", "job_id"], str(exc))])


async def _unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
    return error_response(503, str(exc), headers={"Retry-After": "5"})


REALM = 'Bearer realm="observatory"'


async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return error_response(401, str(exc), [(["header", "Authorization"], str(exc))], {"WWW-Authenticate": REALM})


async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
    challenge = f'{REALM}, error="insufficient_scope"'
    return error_response(403, str(exc), [(["header", "Authorization"], str(exc))], {"WWW-Authenticate": challenge})


async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
    status = 503 if isinstance(exc, Overloaded) else 429
    return error_response(status, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))})


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Allow lists the methods of every route on this path, not just the first one's
        methods = {
            m
            for route in request.app.routes
            if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE
            for m in route.methods
        }
        headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
    return error_response(exc.status_code, str(exc.detail), headers=headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error; see the server logs")


def app_path(scope: Scope) -> str:
    """The request's path below the app's root path (its Serve route prefix)."""
    root, path = scope.get("root_path", ""), scope.get("path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestMetrics:
    """Counts every request and its latency by route template (bounded labels), as the client saw it."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app, self.name = app, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics().request(self.name, route, scope["method"], status, time.perf_counter() - began)


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    RequestValidationError: _validation,
    InvalidSubmission: _invalid,
    JobNotFound: _not_found,
    JobConflict: _conflict,
    BackendUnavailable: _unavailable,
    Unauthorized: _unauthorized,
    Forbidden: _forbidden,
    RateLimited: _rate_limited,
    StarletteHTTPException: _http,
    Exception: _unexpected,
}


def install_error_handlers(app: FastAPI, name: str) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestMetrics, name=name)  # outermost: it sees the 413s too


async def exception_response(request: Request, exc: Exception, send: Send) -> None:
    """Answer `exc` as the app's exception handlers would, for code that runs outside FastAPI's routes. An
    unexpected error is answered 500 and then raised again, as Starlette's ServerErrorMiddleware does."""
    handler = next(HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS)
    response = await handler(request, exc)
    await response(request.scope, request.receive, send)
    if handler is _unexpected:
        raise exc


class BodyLimit:
    """413 for bodies over `max_bytes`: at once from Content-Length, or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "Content-Length is not a number")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await error_response(413, f"request body over {self.max_bytes} bytes")(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise StarletteHTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, counted, send)


async def readiness(checks: dict[str, Callable[[], None]], using: dict[str, str]) -> JSONResponse:
    """200 when every check passes, else 503 naming each failing backend and why. `using` says which
    implementation each backend is (see observatory.backends.describe), so a deployment can be checked."""
    failed: list[tuple[list[str | int], str]] = []
    for name, check in checks.items():
        try:
            await run_in_threadpool(check)
        except BackendUnavailable as e:
            failed.append(([name], str(e)))
    if failed:
        return error_response(503, "not ready: " + "; ".join(m for _, m in failed), failed)
    return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok"), "backends": using})
