"""The TUI's async API client. The App receives one through its constructor, so tests can pass fixed data."""

from __future__ import annotations

from typing import Any, Protocol

import httpx


class ApiError(Exception):
    """The API could not be reached or refused the request; the message is one line for the status bar."""


class Api(Protocol):
    base_url: str

    async def stats(self) -> dict[str, Any]: ...
    async def alerts(self) -> list[dict[str, Any]]: ...
    async def jobs(self, status: str | None, job_type: str | None, limit: int = 50) -> list[dict[str, Any]]: ...
    async def job(self, job_id: str) -> dict[str, Any]: ...
    async def events(self, job_id: str) -> list[dict[str, Any]]: ...
    async def job_types(self) -> list[dict[str, Any]]: ...
    async def submit(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def dead_letters(self) -> list[dict[str, Any]]: ...
    async def requeue(self, job_id: str) -> dict[str, Any]: ...
    async def workers(self) -> dict[str, Any]: ...


class HttpApi:
    def __init__(self, base_url: str, timeout_s: float = 5.0, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=auth)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ApiError(f"API unreachable at {self.base_url} ({e.__class__.__name__})") from e
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                details = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in err.get("details", []))
                raise ApiError(err["message"] + (f" ({details})" if details else ""))
            except (ValueError, KeyError, TypeError):
                raise ApiError(f"HTTP {r.status_code} from {path}") from None
        return r.json()

    async def stats(self) -> dict[str, Any]:
        return await self._call("GET", "/read/stats")

    async def alerts(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/read/alerts"))["alerts"]

    async def jobs(self, status: str | None, job_type: str | None, limit: int = 50) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("status", status), ("type", job_type), ("limit", limit)) if v}
        return (await self._call("GET", "/read/jobs", params=params))["items"]

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/read/jobs/{job_id}")

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        return await self._call("GET", f"/read/jobs/{job_id}/events")

    async def job_types(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/api/job-types")

    async def submit(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/jobs", json={"type": job_type, "payload": payload})

    async def dead_letters(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/read/dlq"))["items"]

    async def requeue(self, job_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/dlq/{job_id}/requeue")

    async def workers(self) -> dict[str, Any]:
        return await self._call("GET", "/read/workers")
