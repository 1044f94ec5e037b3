"""CORS: off by default; with an allow-list, a listed origin may call with a key and read what it needs."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from observatory.settings import Settings
from serve_app.auth import add_cors

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def app(settings: Settings) -> TestClient:
    api = FastAPI()

    @api.post("/jobs")
    def jobs() -> dict[str, str]:
        return {"ok": "yes"}

    add_cors(api, settings)
    return TestClient(api)


def test_off_by_default():
    client = app(Settings())
    r = client.options("/jobs", headers={"Origin": "https://ops.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in client.post("/jobs", headers={"Origin": "https://x"}).headers


def test_only_listed_origins_with_the_key_header():
    client = app(Settings(OBSERVATORY_CORS_ORIGINS="https://ops.example, https://other.example"))
    ok = client.options("/jobs", headers={"Origin": "https://ops.example", **PREFLIGHT})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ops.example"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    refused = client.options("/jobs", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    r = client.post("/jobs", headers={"Origin": "https://other.example"})
    assert r.headers["access-control-allow-origin"] == "https://other.example"
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()
