"""The HTTP surface: health, readiness and Prometheus metrics (the API grows here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.metrics import Metrics

READY_TIMEOUT = 2.0
DOCS_ASSETS = "/docs-assets"


class ReadinessSource(Protocol):
    metrics: Metrics

    async def readiness(self) -> dict[str, dict[str, object]]:
        """Per component: {"ok": bool, ...detail}."""


def create_app(gateway: ReadinessSource, routers: Sequence[APIRouter] = ()) -> FastAPI:
    app = FastAPI(
        title="scgw — Smart Community Gateway",
        summary="Emergency callers and building sensors to alerts, with no loss",
        version="0.1.0",
        docs_url=None,  # served below from packaged assets: a station may have no internet
        redoc_url=None,
    )
    app.mount(
        DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI for the OpenAPI spec, with no CDN."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Broker and database reachable (503 with the failing part otherwise)."""
        try:
            checks = await asyncio.wait_for(gateway.readiness(), READY_TIMEOUT)
        except TimeoutError:
            checks = {"readiness": {"ok": False, "error": "checks timed out"}}
        ready = all(bool(c.get("ok")) for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
