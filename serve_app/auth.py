"""API keys on the HTTP apps: a dependency per scope, the start-up check, and CORS.

Each replica calls `install` once; routes declare `require("read")` and friends. The key store and the
rules live in observatory.access; this module is the FastAPI side.
"""

# No `from __future__ import annotations` here: FastAPI must see the dependency's real types.

import hmac
import logging
from collections.abc import Callable
from typing import Annotated, Any

import ray
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as Scope_

from contracts.models import Scope
from observatory import backends
from observatory.access import OPEN, Guard, Principal
from observatory.errors import BackendUnavailable, Unauthorized
from observatory.ports import KeyStore
from observatory.settings import Settings, get_settings
from serve_app.http import REALM, app_path, error_response

log = logging.getLogger("observatory.auth")

SCHEME = HTTPBearer(
    scheme_name="apiKey",
    auto_error=False,
    description="An API key (`observatory keys create`): `Authorization: Bearer obs_...`.",
)
_guard: Guard | None = None


def serve_host() -> str:
    """The address Serve's proxies listen on, from the Serve controller; unknown counts as exposed."""
    try:
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return str(ray.get(controller.get_http_config.remote(), timeout=30).host)
    except Exception as e:
        log.warning("could not read Serve's HTTP host (%s); treating it as exposed", e)
        return "0.0.0.0"


def install(settings: Settings) -> KeyStore:
    """This replica's guard: creates the keys table, stores OBSERVATORY_ADMIN_KEY, and refuses to start when
    Serve is exposed and no key exists. Returns the key store."""
    global _guard
    store = backends.key_store(settings)
    store.setup()
    _guard = Guard(settings, store, serve_host())
    _guard.start()
    return store


def add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for the allow-list only (off when OBSERVATORY_CORS_ORIGINS is empty); at import time, before the
    app starts, as Starlette requires."""
    if settings.cors_allow_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Correlation-Id"],
            expose_headers=["X-Correlation-Id", "Retry-After"],
            max_age=600,
        )


PRINCIPAL = "observatory.principal"  # where KeyFirst leaves the request's principal in the ASGI scope
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def _bearer(scope: Scope_) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" else None
    return None


def check_webhook_secret(token: str | None) -> None:
    """Unauthorized unless `token` is the webhook's shared secret (compared in constant time)."""
    expected = get_settings().webhook_secret
    if expected is None:
        raise Unauthorized(
            "the alert webhook is off: set OBSERVATORY_WEBHOOK_SECRET here and in Alertmanager's http_config"
        )
    if token is None:
        raise Unauthorized("missing Authorization: Bearer <the webhook secret>")
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("wrong webhook secret")


class KeyFirst:
    """Asks for a usable key before anything else of the request is read: without one, every path but
    the public ones answers 401, whatever the body (the routes then check the scope). A path in `own`
    has its own credential check instead (the alert webhook's shared secret)."""

    def __init__(
        self, app: ASGIApp, public: frozenset[str], own: dict[str, Callable[[str | None], None]] | None = None
    ) -> None:
        self.app, self.public, self.own = app, public, own or {}

    async def __call__(self, scope: Scope_, receive: Receive, send: Send) -> None:
        path = app_path(scope)
        if scope["type"] != "http" or _guard is None or path in self.public:
            await self.app(scope, receive, send)
            return
        try:
            if path in self.own:
                self.own[path](_bearer(scope))
            elif _guard.open_now():  # no key needed, known without the store: no thread hop
                scope[PRINCIPAL] = OPEN
            else:
                scope[PRINCIPAL] = await run_in_threadpool(_guard.identify, _bearer(scope))
        except Unauthorized as e:
            detail = [(["header", "Authorization"], str(e))]
            await error_response(401, str(e), detail, {"WWW-Authenticate": REALM})(scope, receive, send)
            return
        except BackendUnavailable as e:  # the key store: no key can be checked right now
            await error_response(503, str(e), headers={"Retry-After": "5"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def protect(
    app: FastAPI, public: frozenset[str] = PUBLIC, own: dict[str, Callable[[str | None], None]] | None = None
) -> None:
    """Every path of `app` but `public` needs a usable key (when keys are needed at all), or the credential
    its entry in `own` checks."""
    app.add_middleware(KeyFirst, public=public, own=own)


class _Require:
    """The dependency behind `require`. A module-level class, so Serve's pickling keeps it by reference and
    it finds the guard that `install` set in this replica (a closure would carry a stale copy)."""

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        self.scopes = scopes

    async def __call__(
        self, request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)]
    ) -> Principal:
        if _guard is None:
            raise RuntimeError("serve_app.auth.install was not called in this replica")
        known = request.scope.get(PRINCIPAL)
        if known is not None:
            return _guard.allow(known, self.scopes)
        token = credentials.credentials if credentials else None
        return await run_in_threadpool(_guard.check, token, self.scopes)


def require(*scopes: Scope) -> Any:
    """A dependency: the request's Principal, which holds one of `scopes` (401/403 otherwise)."""
    return Depends(_Require(scopes))
