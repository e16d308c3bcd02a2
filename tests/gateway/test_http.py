"""/healthz, /readyz and /metrics of a running gateway, and what /readyz says when the
broker or the database is gone."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.config import load_settings
from gateway.runtime import Gateway
from tests.gateway.conftest import Publisher, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.waiting import wait_for


async def _ready(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/readyz")


@pytest.mark.fault(
    "Broker stopped, then started",
    checks="/readyz 503 while down (broker check), 200 after reconnect; /metrics counts",
)
async def test_health_ready_metrics_and_broker_outage(
    mosquitto: MosquittoServer, sqlite_url: str
) -> None:
    await register(sqlite_url, ["btn-1"])
    port = free_port()
    settings = load_settings(
        None,
        mqtt={"url": mosquitto.url, "client_id": "gw-http"},
        database={"url": sqlite_url},
        http={"bind": f"127.0.0.1:{port}"},
    )
    gateway = Gateway(settings)
    task = asyncio.create_task(gateway.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_for(lambda: _status(client, "/healthz", 200), timeout=15, message="healthz")
            ready = await wait_for(
                lambda: _status(client, "/readyz", 200), timeout=15, message="ready"
            )
            body = ready.json()
            assert body["ready"] is True
            assert body["checks"]["database"]["backend"] == "sqlite"

            pub = Publisher(mosquitto.url)
            pub.json("scgw/btn-1/event", {"type": "sos", "id": "m-1"})
            pub.raw("scgw/btn-1/event", b"{broken")
            await pub.flushed()
            pub.close()

            async def metrics_show_both() -> str | None:
                text = (await client.get("/metrics")).text
                ok = 'scgw_messages_stored_total{kind="event"} 1.0' in text and (
                    'scgw_messages_rejected_total{lane="event",reason="malformed_json"} 1.0' in text
                )
                return text if ok else None

            text = await wait_for(metrics_show_both, timeout=10, message="metrics")
            assert "scgw_ack_lag_seconds_bucket" in text
            assert 'scgw_mqtt_connected{lane="event"} 1.0' in text

            mosquitto.stop()
            not_ready = await wait_for(
                lambda: _status(client, "/readyz", 503), timeout=15, message="broker down"
            )
            assert not_ready.json()["checks"]["broker"]["ok"] is False
            mosquitto.start()
            await wait_for(
                lambda: _status(client, "/readyz", 200), timeout=30, message="reconnected"
            )
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 20)


@pytest.mark.fault(
    "PostgreSQL stopped, then started",
    checks="/readyz 503 names the database, /healthz 200, ready again after",
)
async def test_readyz_reports_database_outage(
    mosquitto: MosquittoServer, pg_owned_server: PostgresServer
) -> None:
    db_url = pg_owned_server.create_database("scgw_ready")
    port = free_port()
    settings = load_settings(
        None,
        mqtt={"url": mosquitto.url, "client_id": "gw-ready"},
        database={"url": db_url},
        http={"bind": f"127.0.0.1:{port}"},
    )
    gateway = Gateway(settings)
    task = asyncio.create_task(gateway.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_for(lambda: _status(client, "/readyz", 200), timeout=20, message="ready")
            pg_owned_server.stop()
            down = await wait_for(
                lambda: _status(client, "/readyz", 503), timeout=20, message="db down"
            )
            assert down.json()["checks"]["database"]["ok"] is False
            assert (await client.get("/healthz")).status_code == 200  # the process is still up
            pg_owned_server.start()
            await wait_for(lambda: _status(client, "/readyz", 200), timeout=30, message="db back")
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 20)


async def _status(client: httpx.AsyncClient, path: str, code: int) -> httpx.Response | None:
    try:
        response = await client.get(path)
    except httpx.TransportError:
        return None
    return response if response.status_code == code else None


class _Idle:
    """The least a gateway offers the HTTP app (a unit test of the docs route only)."""

    def __init__(self) -> None:
        from gateway.metrics import Metrics

        self.metrics = Metrics()

    async def readiness(self) -> dict[str, dict[str, object]]:
        return {"test": {"ok": True}}


async def test_api_docs_work_without_internet() -> None:
    from gateway.http.app import create_app

    app = create_app(_Idle())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "/docs-assets/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert (await client.get(f"/docs-assets/{asset}")).status_code == 200
        assert (await client.get("/openapi.json")).json()["info"]["title"].startswith("scgw")
