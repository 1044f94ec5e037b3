"""The HTTP layer both apps share, on a bare FastAPI app (no Ray, no servers): a backend outage is a 503
with a JSON body and Retry-After, and readiness names each backend that is down."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from observatory.errors import BusUnavailable, StoreUnavailable
from serve_app.http import install_error_handlers, readiness

USING = {"bus": "rabbitmq", "jobs": "postgresql"}


def ok() -> None:
    pass


def store_down() -> None:
    raise StoreUnavailable("PostgreSQL is unreachable: connection refused")


def bus_down() -> None:
    raise BusUnavailable("RabbitMQ is unreachable")


def client(checks: dict) -> TestClient:
    app = FastAPI()
    install_error_handlers(app, "test")

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return await readiness(checks, USING)

    @app.post("/jobs")
    async def submit() -> dict:
        store_down()
        return {}

    return TestClient(app)


def test_a_store_outage_answers_503_with_a_json_error_and_retry_after():
    r = client({}).post("/jobs")

    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json()["error"]["code"] == "unavailable" and "PostgreSQL is unreachable" in r.json()["error"]["message"]


def test_readiness_is_200_naming_the_backends_in_use_when_every_check_passes():
    r = client({"bus": ok, "jobs": ok}).get("/readyz")

    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"bus": "ok", "jobs": "ok"}, "backends": USING}


def test_readiness_is_503_naming_each_backend_that_is_down():
    r = client({"bus": bus_down, "jobs": store_down}).get("/readyz")

    assert r.status_code == 503
    assert [d["loc"] for d in r.json()["error"]["details"]] == [["bus"], ["jobs"]]
    assert "RabbitMQ is unreachable" in r.json()["error"]["message"]


def test_readiness_is_503_when_only_one_backend_is_down():
    r = client({"bus": ok, "jobs": store_down}).get("/readyz")

    assert r.status_code == 503 and [d["loc"] for d in r.json()["error"]["details"]] == [["jobs"]]
