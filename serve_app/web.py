"""The web dashboard (route prefix /): static HTML, CSS and JavaScript from this package, no CDN, no build.

The page reads everything from the gateway (/api) and the read model (/read), live through
`GET /read/stream`; this app only serves the files and says which operator UIs answer.
"""

# No `from __future__ import annotations` here: FastAPI must see real types on the Serve ingress methods.

import asyncio
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from ray import serve

from observatory import __version__, logs
from observatory.settings import get_settings
from serve_app import auth
from serve_app.http import error_response, install_error_handlers

ASSETS = Path(__file__).parent / "web"
FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
LINKS_TTL_S = 30.0

api = FastAPI(title="Observatory web dashboard", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
install_error_handlers(api, "web")


class Link(BaseModel):
    name: str
    url: str


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code < 500
    except httpx.HTTPError:
        return False


# Defined before the class: Serve serializes the deployment class when it is decorated.
@serve.deployment(name="Web")
@serve.ingress(api)
class Web:
    def __init__(self) -> None:
        settings = get_settings()
        logs.configure(settings.log_level)
        auth.install(settings)
        self._targets = {
            "Ray dashboard": settings.ray_dashboard_url,
            "Prometheus": settings.prometheus_url,
            "Alertmanager": settings.alertmanager_url,
            "Grafana": settings.grafana_url,
            "RabbitMQ": settings.rabbitmq_management_url,
        }
        self._public = settings.public_urls
        self._links: list[Link] = []
        self._checked = 0.0

    @api.get("/")
    async def index(self) -> FileResponse:
        return FileResponse(ASSETS / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @api.get("/static/{name}")
    async def asset(self, name: str) -> Response:
        if name not in FILES:
            return error_response(404, f"no asset named {name}")
        return FileResponse(ASSETS / name, media_type=FILES[name], headers={"Cache-Control": "no-cache"})

    @api.get("/links", response_model=list[Link], dependencies=[auth.require("read")])
    async def links(self) -> list[Link]:
        """The operator UIs that answer right now (checked at most every 30 s), at the address a browser
        opens (OBSERVATORY_PUBLIC_URLS, else the one checked)."""
        if time.monotonic() - self._checked > LINKS_TTL_S:
            async with httpx.AsyncClient(timeout=1.0) as client:
                answers = await asyncio.gather(*(_answers(client, url) for url in self._targets.values()))
            self._links = [
                Link(name=n, url=self._public.get(n, u))
                for (n, u), ok in zip(self._targets.items(), answers, strict=True)
                if ok
            ]
            self._checked = time.monotonic()
        return self._links


app = Web.bind()
