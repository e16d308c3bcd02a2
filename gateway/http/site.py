"""The gateway's whole HTTP surface in one app: health/metrics (``app.py``), accept links,
the ``/api/v1`` duty-desk API, the browser login and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gateway.alerting import Alerting
from gateway.audit import Auditor
from gateway.config import Settings
from gateway.http.accept_routes import accept_router
from gateway.http.api.actions import DeskActions
from gateway.http.api.console import ApiStore, Console
from gateway.http.api.routes_alerts import alerts_router
from gateway.http.api.routes_audit import audit_router
from gateway.http.api.routes_devices import devices_router
from gateway.http.api.routes_people import people_router
from gateway.http.api.routes_stats import stats_router
from gateway.http.api.routes_users import users_router
from gateway.http.api.stream import AlertFeed
from gateway.http.app import ReadinessSource, create_app
from gateway.http.dashboard import dashboard_router
from gateway.http.limits import limited_counter
from gateway.http.session import session_router
from gateway.rate_limit import DeviceRateLimiter
from gateway.registry import LiveRegistry
from gateway.storage.base import Store, StoreError


class GatewayParts(ReadinessSource, Protocol):
    """What the site needs of :class:`gateway.runtime.Gateway`."""

    settings: Settings
    store: Store
    alerting: Alerting
    registry: LiveRegistry
    limiter: DeviceRateLimiter  # telemetry's: which devices are flagged for flooding


def _where(loc: object) -> str:
    parts = [str(p) for p in loc] if isinstance(loc, list | tuple) else [str(loc)]
    return ".".join(parts)


def _finite(value: object) -> object:
    """NaN and ±Infinity (which lenient JSON parsing lets in, and errors echo back as
    ``input``) as text: strict JSON cannot carry them, and the answer must still render."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body plus one readable line: "query.priority: Input should be …"."""
    assert isinstance(exc, RequestValidationError)
    # A raw body that is not UTF-8 comes back as ``input`` bytes: shown, not decoded strictly.
    encoders: dict[Any, Callable[[Any], Any]] = {
        Exception: str,
        bytes: lambda b: b.decode("utf-8", errors="replace"),
    }
    errors = _finite(jsonable_encoder(exc.errors(), custom_encoder=encoders))
    assert isinstance(errors, list)
    message = "; ".join(f"{_where(e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The database is away (restart, failover): say so, and let the client retry.
    return JSONResponse(
        {"detail": "the database is not reachable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def console_of(gateway: GatewayParts) -> Console:
    alerting = gateway.alerting
    return Console(
        # Both backends implement every half of the store (registry, alerts, users).
        store=cast(ApiStore, gateway.store),
        engine=alerting.engine,
        registry=alerting.registry,
        settings=gateway.settings,
        limiter=gateway.limiter,
        notifier=alerting.notifier,
    )


def build_app(gateway: GatewayParts, console: Console | None = None) -> FastAPI:
    console = console or console_of(gateway)
    app = create_app(
        gateway,
        routers=[
            accept_router(gateway.alerting.accept),
            alerts_router(),
            devices_router(),
            people_router(),
            stats_router(),
            users_router(),
            audit_router(),
            session_router(),
            dashboard_router(),
        ],
    )
    app.state.console = console
    app.state.feed = AlertFeed(console)
    app.state.actions = DeskActions(console)
    # Read by the accept-link and login routes through request.app.state.
    app.state.auditor = Auditor(console.store, console.now)
    app.state.rate_limited = limited_counter(gateway.metrics)
    app.state.on_server_stop = [app.state.feed.stop, app.state.actions.stop]
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StoreError, _unavailable)
    return app
