"""The duty-desk API in process: a gateway built (not run) on a seeded database, its app
driven through httpx's ASGI transport. One login per role; a small community with alerts,
readings and a pending device."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from alerts.models import Alert, Priority
from devices.feedback import Feedback
from devices.models import DeviceHealth, DeviceType, EventType, PendingSighting, Reading
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from gateway.config import load_settings
from gateway.http.api.console import ApiStore
from gateway.http.site import build_app
from gateway.runtime import Gateway
from gateway.users import Role, hash_secret, new_token

NOW = datetime.now(UTC).replace(microsecond=0)
ROLES = tuple(Role)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> str:
    """For the tests that must hold on both backends (SQL differs per backend)."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@dataclass
class FeedbackLog:
    """Stands in for the device feedback queue: what the devices were told."""

    sent: list[Feedback] = field(default_factory=list)

    def tell(self, feedback: Feedback) -> None:
        self.sent.append(feedback)


@dataclass
class Site:
    gateway: Gateway
    app: FastAPI
    client: httpx.AsyncClient
    tokens: dict[Role, str]
    feedback: FeedbackLog
    alerts: dict[str, Alert]

    @property
    def store(self) -> ApiStore:
        return cast(ApiStore, self.gateway.store)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(
        self, method: str, path: str, role: Role | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if role is not None:
            headers.update(self.auth(role))
        return await self.client.request(method, path, headers=headers, **kwargs)


async def seed(gateway: Gateway) -> dict[str, Alert]:
    store = cast(ApiStore, gateway.store)
    await store.upsert_responders(
        [
            ResponderRecord("v-1", "王志愿", "volunteer", phone="13900000001", building="3"),
            ResponderRecord("v-2", "李志愿", "volunteer", phone="13900000002", on_duty="no"),
            ResponderRecord("desk", "服务站值班", "duty"),
        ]
    )
    await store.upsert_residents(
        [
            ResidentRecord(
                "r1",
                "张秀英",
                phone="13800000000",
                building="3",
                unit="1",
                room="201",
                lives_alone=True,
                medical_notes="高血压，服用华法林",
                contacts=(Contact("儿子", "13900009999"),),
                responders=("v-1",),
            ),
            ResidentRecord("r2", "李建国", phone="13800000002", building="5", unit="2", room="302"),
        ]
    )
    await store.upsert_devices(
        [
            DeviceRecord("btn-1", DeviceType.SOS_BUTTON, name="一键呼叫器", resident_id="r1"),
            DeviceRecord("th-1", DeviceType.TEMP_HUMIDITY, resident_id="r1"),
            DeviceRecord("smoke-1", DeviceType.SMOKE_DETECTOR, resident_id="r2"),
            DeviceRecord("water-9", DeviceType.WATER_SENSOR, building="9"),
        ]
    )
    # Readings every 10 minutes over the last 6 hours: temperature rising 20 → 25.6.
    readings = [
        Reading("th-1", "temperature", NOW - timedelta(minutes=10 * i), 20 + (36 - i) * 0.16)
        for i in range(36, 0, -1)
    ] + [Reading("th-1", "humidity", NOW - timedelta(minutes=30), 41.0)]
    await store.store_batch(
        readings,
        [
            DeviceHealth("th-1", NOW - timedelta(minutes=10), battery=88, online=True, rssi=-70),
            DeviceHealth("btn-1", NOW - timedelta(minutes=1), battery=15, online=True),
            DeviceHealth("smoke-1", NOW - timedelta(days=2), battery=90, online=True),
        ],
    )
    await store.record_pending(
        [
            PendingSighting(
                "stray-7", NOW - timedelta(minutes=5), "event", '{"type":"sos"}', EventType.SOS
            )
        ]
    )
    await gateway.alerting.registry.refresh()
    engine = gateway.alerting.engine
    alerts = {}
    for key, kind, priority, device, age in [
        ("sos", "sos", Priority.P1, "btn-1", 120),
        ("smoke", "smoke", Priority.P1, "smoke-1", 30),
        ("water", "water_leak", Priority.P2, "water-9", 600),
    ]:
        device_rec = gateway.alerting.registry.device(device)
        result = await engine.open(
            kind=kind,
            priority=priority,
            device_id=device,
            resident_id=device_rec.resident_id if device_rec else None,
            at=NOW - timedelta(seconds=age),
            trigger_key=f"seed:{key}",
            actor=f"device:{device}",
        )
        alerts[key] = result.alert
    return alerts


async def make_users(store: ApiStore) -> dict[Role, str]:
    tokens = {}
    for role in ROLES:
        token = new_token()
        await store.create_user(f"{role.value}-user", role, hash_secret(token), NOW)
        tokens[role] = token
    return tokens


@dataclass
class Built:
    gateway: Gateway
    app: FastAPI
    tokens: dict[Role, str]
    feedback: FeedbackLog
    alerts: dict[str, Alert]

    async def close(self) -> None:
        await self.app.state.feed.stop()
        await self.app.state.actions.stop()
        # Follow-up messages (assigned, taken, closed) write their outcome to the timeline.
        await self.gateway.alerting.announcer.drain()
        await self.gateway.store.close()


async def build_site(db_url: str) -> Built:
    """A gateway that is built but not run: no broker, no dispatcher; its HTTP app only."""
    settings = load_settings(
        None,
        # Never connected: device feedback goes to FeedbackLog instead.
        mqtt={"url": "mqtt://127.0.0.1:9", "client_id": "api-test"},
        database={"url": db_url},
    )
    gateway = Gateway(settings, http=False)
    await gateway.store.open()
    log = FeedbackLog()
    gateway.alerting.engine.feedback = log
    try:
        alerts = await seed(gateway)
        tokens = await make_users(cast(ApiStore, gateway.store))
    except BaseException:
        await gateway.store.close()
        raise
    return Built(gateway, build_app(gateway), tokens, log, alerts)


@asynccontextmanager
async def open_site(db_url: str) -> AsyncIterator[Site]:
    built = await build_site(db_url)
    try:
        transport = httpx.ASGITransport(app=built.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Site(built.gateway, built.app, client, built.tokens, built.feedback, built.alerts)
    finally:
        await built.close()


@pytest.fixture
async def site(sqlite_url: str) -> AsyncIterator[Site]:
    async with open_site(sqlite_url) as s:
        yield s


@pytest.fixture
async def any_site(any_db: str) -> AsyncIterator[Site]:
    async with open_site(any_db) as s:
        yield s
