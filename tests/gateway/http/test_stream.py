"""GET /api/v1/alerts/stream over a real HTTP server: snapshot, live changes within 2 s,
Last-Event-ID resume, heartbeats; and the poller's handling of late-committed timeline ids."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from alerts.models import Priority
from gateway.http.api.stream import AlertFeed, FeedEvent
from gateway.http.server import bind_socket, make_server
from gateway.storage.base import TimelineChange
from gateway.users import Role
from tests.gateway.http.conftest import NOW, Site, open_site
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

LIVE_WITHIN = 2.0  # seconds from a change to the open dashboard


@dataclass
class Served:
    site: Site
    base: str


@pytest.fixture
async def served(any_db: str) -> AsyncIterator[Served]:
    async with open_site(any_db) as site:
        port = free_port()
        server = make_server(site.app, "", 0)
        sock = bind_socket("127.0.0.1", port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield Served(site, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()


@dataclass
class Event:
    name: str
    id: int | None
    data: Any


@dataclass
class Listener:
    """Reads one SSE response in the background; ``events`` and ``comments`` fill up."""

    response: httpx.Response
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    async def run(self) -> None:
        name, ident, data = "message", None, []
        async for line in self.response.aiter_lines():
            if line == "":
                if data:
                    self.events.append(Event(name, ident, json.loads("\n".join(data))))
                name, ident, data = "message", None, []
            elif line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("retry:"):
                self.retry = int(line[6:])
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("id:"):
                ident = int(line[3:])
            elif line.startswith("data:"):
                data.append(line[5:].strip())

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@contextlib.asynccontextmanager
async def listen(
    served: Served, role: Role = Role.VIEWER, headers: dict[str, str] | None = None
) -> AsyncIterator[Listener]:
    auth = {**served.site.auth(role), **(headers or {})}
    async with (
        httpx.AsyncClient(base_url=served.base, timeout=10) as client,
        client.stream("GET", "/api/v1/alerts/stream", headers=auth) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        listener = Listener(response)
        reader = asyncio.create_task(listener.run())
        try:
            yield listener
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def test_snapshot_then_live_changes_within_two_seconds(served: Served) -> None:
    site = served.site
    async with listen(served) as stream:
        snap = await wait_for(lambda: stream.named("snapshot"), timeout=5, message="snapshot")
        assert stream.retry is not None
        kinds = [a["kind"] for a in snap[0].data["alerts"]]
        assert kinds == ["sos", "smoke", "water_leak"]
        assert snap[0].id == await site.app.state.feed.latest_id()

        alert_id = site.alerts["sos"].id
        acked = await site.call("POST", f"/api/v1/alerts/{alert_id}/ack", Role.DUTY)
        assert acked.status_code == 200
        started = time.monotonic()

        def ack_seen() -> Event | None:
            for e in stream.named("alert"):
                if e.data["alert"]["id"] == alert_id and e.data["alert"]["state"] == "acknowledged":
                    return e
            return None

        event = await wait_for(ack_seen, timeout=LIVE_WITHIN, message="ack on the stream")
        assert time.monotonic() - started < LIVE_WITHIN
        assert "acknowledged" in event.data["actions"]
        assert event.id is not None
        assert event.id > snap[0].id

        opened = await site.gateway.alerting.engine.open(
            kind="fall",
            priority=Priority.P1,
            device_id="btn-1",
            resident_id="r1",
            at=NOW,
            trigger_key="stream:new",
            actor="device:btn-1",
        )

        def new_seen() -> bool:
            return any(e.data["alert"]["id"] == opened.alert.id for e in stream.named("alert"))

        await wait_for(new_seen, timeout=LIVE_WITHIN, message="new alert on the stream")
        ids = [e.id for e in stream.events]
        assert ids == sorted(ids)


async def test_resume_with_last_event_id(served: Served) -> None:
    site = served.site
    async with listen(served) as stream:
        snap = await wait_for(lambda: stream.named("snapshot"), timeout=5, message="snapshot")
    last = snap[0].id
    assert last is not None
    # Changes while the dashboard was away (a network blip).
    water = site.alerts["water"].id
    await site.call(
        "POST", f"/api/v1/alerts/{water}/resolve", Role.DUTY, json={"outcome": "assisted"}
    )
    await site.call("POST", f"/api/v1/alerts/{water}/notes", Role.DUTY, json={"text": "ok"})

    async with listen(served, headers={"Last-Event-ID": str(last)}) as stream:
        replay = await wait_for(lambda: stream.named("alert"), timeout=5, message="replay")
        assert not stream.named("snapshot")
        assert replay[0].data["alert"]["id"] == water
        assert replay[0].data["alert"]["state"] == "resolved"
        assert replay[0].data["actions"][-1] == "note"

    # An id from elsewhere (ahead of this database): start over from a snapshot.
    async with listen(served, headers={"Last-Event-ID": str(last + 10_000)}) as stream:
        await wait_for(lambda: stream.named("snapshot"), timeout=5, message="snapshot")
    async with listen(served, headers={"Last-Event-ID": "garbage"}) as stream:
        await wait_for(lambda: stream.named("snapshot"), timeout=5, message="snapshot")


async def test_heartbeats_and_the_poller_stops_with_the_last_listener(served: Served) -> None:
    feed: AlertFeed = served.site.app.state.feed
    feed.heartbeat = 0.2
    async with listen(served) as stream:
        await wait_for(lambda: len(stream.comments) >= 2, timeout=5, message="heartbeats")
        assert stream.comments[0] == ": keepalive"
        assert feed.listeners == 1
    await wait_for(lambda: feed.listeners == 0, timeout=5, message="listener gone")


async def test_stream_needs_a_login(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base, timeout=5) as client:
        res = await client.get("/api/v1/alerts/stream")
        assert res.status_code == 401
        res = await client.get(
            "/api/v1/alerts/stream?last_event_id=-1", headers=served.site.auth(Role.VIEWER)
        )
        assert res.status_code == 422


# -- the poller on its own: PostgreSQL may commit a lower id after a higher one ------------------
@dataclass
class FakeStore:
    """Timeline rows as the poller reads them; alerts are looked up by id."""

    rows: list[tuple[int, str, str]] = field(default_factory=list)
    backend: str = "sqlite"

    async def latest_timeline_id(self) -> int:
        return max((r[0] for r in self.rows), default=0)

    async def timeline_changes(self, after_id: int, limit: int) -> list[TimelineChange]:
        return [TimelineChange(*r) for r in sorted(self.rows) if r[0] > after_id][:limit]


class FakeConsole:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def alert_views(self, alerts: Sequence[Any]) -> list[Any]:
        return list(alerts)


class FakeAlertStore(FakeStore):
    async def get_alert(self, alert_id: str) -> Any:
        @dataclass
        class View:
            id: str

            def model_dump(self, mode: str) -> dict[str, str]:
                return {"id": self.id}

        return View(alert_id)


async def test_poller_delivers_late_commits_and_forgets_old_gaps() -> None:
    store = FakeAlertStore(rows=[(1, "a", "opened")])
    now = [0.0]
    feed = AlertFeed(FakeConsole(store), gap_wait=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    sub = await feed.subscribe()
    try:
        assert feed.listeners == 1
        store.rows += [(2, "b", "opened"), (4, "c", "opened")]  # 3 is not committed yet
        await feed.poll()
        assert [e.id for e in sub.events] == [2, 4]
        sub.events.clear()
        store.rows.append((3, "d", "opened"))  # the late commit
        now[0] = 1.0
        await feed.poll()
        assert [(e.id, json.loads(e.data)["alert"]["id"]) for e in sub.events] == [(3, "d")]
        sub.events.clear()
        store.rows += [(7, "e", "note")]  # 5 and 6 never come (rolled back)
        await feed.poll()
        assert [e.id for e in sub.events] == [7]
        sub.events.clear()
        now[0] = 10.0  # past gap_wait: 5 and 6 are given up
        store.rows.append((5, "f", "opened"))
        await feed.poll()
        assert list(sub.events) == []
    finally:
        feed.unsubscribe(sub)
        await feed.stop()


def test_event_encoding() -> None:
    event = FeedEvent(7, "alert", b'{"a":1}')
    assert event.encode() == b'id: 7\nevent: alert\ndata: {"a":1}\n\n'


async def test_an_open_stream_does_not_hold_up_a_stop(sqlite_url: str) -> None:
    async with open_site(sqlite_url) as site:
        port = free_port()
        server = make_server(site.app, "", 0)
        sock = bind_socket("127.0.0.1", port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        served = Served(site, f"http://127.0.0.1:{port}")
        try:
            async with listen(served) as stream:
                await wait_for(lambda: stream.named("snapshot"), timeout=5, message="snapshot")
                started = time.monotonic()
                server.should_exit = True
                await asyncio.wait_for(task, 10)
                assert time.monotonic() - started < 1.5  # not the 3 s graceful timeout
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()
