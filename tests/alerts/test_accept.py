"""One-tap accept links: tokens, the service, and the ``/r/{token}`` routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from alerts.accept import (
    AcceptService,
    ActStatus,
    AlertView,
    RegistryLookup,
    decline_link,
    hash_token,
    issue_tokens,
    link,
)
from alerts.models import (
    AcceptToken,
    Alert,
    AlertState,
    NewAlert,
    Priority,
    TimelineEntry,
    TokenStatus,
)
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord
from gateway.http.accept_routes import accept_router
from gateway.storage.factory import open_store
from gateway.storage.sqlite import SqliteStore
from tests.alerts.registry import InMemoryRegistry

T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)  # 17:26:53 in Shanghai
TTL = timedelta(hours=4)
RESIDENT = ResidentRecord(
    "r1", "张秀英", phone="138 0013 8000", building="3", unit="1", room="201",
    medical_notes="<b>高血压</b>",
)  # fmt: skip
DEVICE = DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id="r1")
ALERT = Alert(
    id="a-1",
    kind="sos",
    priority=Priority.P1,
    state=AlertState.OPEN,
    opened_at=T0,
    updated_at=T0,
    device_id="btn-1",
    resident_id="r1",
)


# -- fakes -----------------------------------------------------------------------------------
@dataclass
class FakeTokenStore:
    """The three token methods, with the store's semantics (USED wins over EXPIRED)."""

    tokens: dict[str, AcceptToken] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    creates: int = 0

    async def create_tokens(self, tokens: Sequence[AcceptToken]) -> None:
        self.creates += 1
        for t in tokens:
            self.tokens[t.token_hash] = t

    def _status(self, token: AcceptToken | None, now: datetime) -> TokenStatus:
        if token is None:
            return TokenStatus.UNKNOWN
        if token.used_at is not None:
            return TokenStatus.USED
        if token.expires_at <= now:
            return TokenStatus.EXPIRED
        return TokenStatus.OK

    async def peek_token(
        self, token_hash: str, now: datetime
    ) -> tuple[TokenStatus, AcceptToken | None]:
        token = self.tokens.get(token_hash)
        return self._status(token, now), token

    async def use_token(
        self, token_hash: str, now: datetime, action: str
    ) -> tuple[TokenStatus, AcceptToken | None]:
        # Atomic like the database's conditional UPDATE; the yield inside lets a concurrent
        # caller get as far as the lock, so a double tap really races.
        async with self.lock:
            await asyncio.sleep(0)
            token = self.tokens.get(token_hash)
            status = self._status(token, now)
            if status is not TokenStatus.OK or token is None:
                return status, token
            used = replace(token, used_at=now, action=action)
            self.tokens[token_hash] = used
            return TokenStatus.OK, used


@dataclass(frozen=True)
class Answer:
    status: str
    alert: Alert | None = None


@dataclass
class FakeActions:
    answer: str = "done"
    acked_by: str | None = None
    calls: list[tuple[str, str, str, str]] = field(default_factory=list)

    def _reply(self) -> Answer:
        acked_by = None if self.acked_by is None else f"responder:{self.acked_by}"
        alert = replace(ALERT, acked_by=acked_by)
        if self.answer == "taken":
            alert = replace(alert, state=AlertState.ACKNOWLEDGED)
        return Answer(self.answer, alert)

    async def accept(self, alert_id: str, responder_id: str, via: str) -> Answer:
        self.calls.append(("accept", alert_id, responder_id, via))
        return self._reply()

    async def decline(self, alert_id: str, responder_id: str, via: str) -> Answer:
        self.calls.append(("decline", alert_id, responder_id, via))
        return self._reply()


@dataclass
class FakeLookup:
    alert: Alert = ALERT

    async def alert_view(self, alert_id: str) -> AlertView | None:
        return AlertView(self.alert, RESIDENT, DEVICE) if alert_id == self.alert.id else None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Setup:
    store: FakeTokenStore
    actions: FakeActions
    lookup: FakeLookup
    clock: Clock
    service: AcceptService
    tokens: dict[str, str]


@pytest.fixture
async def setup() -> Setup:
    store, actions, lookup, clock = FakeTokenStore(), FakeActions(), FakeLookup(), Clock()
    service = AcceptService(store, actions, lookup, clock=clock)
    tokens = await issue_tokens(store, "a-1", ["v-1", "v-2"], T0, TTL)
    return Setup(store, actions, lookup, clock, service, tokens)


def app_for(service: AcceptService, per_minute: int = 30) -> FastAPI:
    app = FastAPI()
    app.include_router(accept_router(service, per_minute=per_minute))
    return app


@pytest.fixture
async def client(setup: Setup) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(setup.service))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        yield c


# -- tokens ----------------------------------------------------------------------------------
async def test_tokens_are_unguessable_and_only_hashes_are_stored(setup: Setup) -> None:
    assert set(setup.tokens) == {"v-1", "v-2"}
    for token in setup.tokens.values():
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128
        assert len(token) >= 32
    stored = list(setup.store.tokens.values())
    assert {t.token_hash for t in stored} == {
        hashlib.sha256(t.encode()).hexdigest() for t in setup.tokens.values()
    }
    text = repr(stored)
    assert not any(token in text for token in setup.tokens.values())
    assert all(t.expires_at == T0 + TTL and t.alert_id == "a-1" for t in stored)
    assert {t.responder_id for t in stored} == {"v-1", "v-2"}


async def test_issue_tokens_details() -> None:
    store = FakeTokenStore()
    many = [await issue_tokens(store, "a", ["x"], T0, 60.0) for _ in range(50)]
    assert len({d["x"] for d in many}) == 50
    assert store.tokens[hash_token(many[0]["x"])].expires_at == T0 + timedelta(seconds=60)
    dup = await issue_tokens(store, "a", ["y", "y", "z"], T0, TTL)
    assert set(dup) == {"y", "z"}
    before = store.creates
    assert await issue_tokens(store, "a", [], T0, TTL) == {}
    assert store.creates == before  # nothing to store, no call
    with pytest.raises(ValueError, match="ttl"):
        await issue_tokens(store, "a", ["x"], T0, 0)


def test_links() -> None:
    assert link("https://gw.example.cn/", "TOK") == "https://gw.example.cn/r/TOK"
    assert link("https://gw.example.cn/scgw", "TOK") == "https://gw.example.cn/scgw/r/TOK"
    assert decline_link("https://gw", "TOK") == "https://gw/r/TOK?action=decline"


# -- the service -----------------------------------------------------------------------------
async def test_view_never_acts(setup: Setup) -> None:
    token = setup.tokens["v-1"]
    for _ in range(3):
        seen = await setup.service.view(token)
        assert seen.status is TokenStatus.OK
        assert seen.usable
        assert seen.view is not None
        assert seen.view.resident == RESIDENT
    assert setup.actions.calls == []
    assert setup.store.tokens[hash_token(token)].used_at is None


async def test_act_once(setup: Setup) -> None:
    token = setup.tokens["v-1"]
    first = await setup.service.act(token, "accept")
    assert first.status is ActStatus.DONE
    assert first.alert_id == "a-1"
    assert setup.actions.calls == [("accept", "a-1", "v-1", "link")]
    again = await setup.service.act(token, "decline")
    assert again.status is ActStatus.USED
    assert again.token is not None
    assert again.token.action == "accept"
    assert len(setup.actions.calls) == 1
    assert (await setup.service.view(token)).status is TokenStatus.USED


async def test_act_outcomes(setup: Setup) -> None:
    assert (await setup.service.act("x" * 32, "accept")).status is ActStatus.UNKNOWN
    assert (await setup.service.act("../../etc", "accept")).status is ActStatus.UNKNOWN
    bad = await setup.service.act(setup.tokens["v-1"], "dance")
    assert bad.status is ActStatus.BAD_ACTION
    assert setup.store.tokens[hash_token(setup.tokens["v-1"])].used_at is None  # not burnt

    setup.actions.answer, setup.actions.acked_by = "taken", "v-9"
    assert (await setup.service.act(setup.tokens["v-1"], "accept")).status is ActStatus.TAKEN
    setup.actions.acked_by = "v-2"  # this responder already has it (accepted in the app)
    assert (await setup.service.act(setup.tokens["v-2"], " Accept ")).status is ActStatus.DONE

    store = setup.store
    more = await issue_tokens(store, "a-1", ["v-3", "v-4"], T0, TTL)
    setup.actions.answer = "closed"
    assert (await setup.service.act(more["v-3"], "accept")).status is ActStatus.CLOSED
    setup.clock.now = T0 + TTL
    assert (await setup.service.act(more["v-4"], "accept")).status is ActStatus.EXPIRED


# -- HTTP ------------------------------------------------------------------------------------
async def test_get_shows_the_alert_and_does_not_act(
    setup: Setup, client: httpx.AsyncClient
) -> None:
    token = setup.tokens["v-1"]
    for _ in range(3):  # chat apps prefetch, sometimes more than once
        r = await client.get(f"/r/{token}")
        assert r.status_code == 200
    assert setup.actions.calls == []
    html = r.text
    for expected in (
        "紧急呼叫",
        "Emergency call",
        "紧急 · EMERGENCY",
        "张秀英",
        "3号楼1单元201",
        'href="tel:13800138000"',
        "2026-03-14 17:26:53",
        'name="action" value="accept"',
        'name="action" value="decline"',
        "&lt;b&gt;高血压&lt;/b&gt;",  # escaped, never markup
    ):
        assert expected in html, expected
    assert 'method="post"' in html
    assert "<script" not in html
    assert "src=" not in html
    assert "<link" not in html
    assert 'name="viewport"' in html
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]

    en = await client.get(f"/r/{token}?lang=en")
    assert "Emergency call" in en.text
    assert "紧急呼叫" not in en.text
    assert "Bldg 3, Unit 1, Room 201" in en.text

    as_json = await client.get(f"/r/{token}", headers={"accept": "application/json"})
    assert as_json.json()["status"] == "ok"
    assert as_json.json()["usable"] is True


async def test_get_statuses(setup: Setup, client: httpx.AsyncClient) -> None:
    assert (await client.get("/r/" + "A" * 32)).status_code == 404
    assert (await client.get("/r/short")).status_code == 404
    await setup.service.act(setup.tokens["v-1"], "accept")
    used = await client.get(f"/r/{setup.tokens['v-1']}")
    assert used.status_code == 409
    assert "您已接单" in used.text
    assert "张秀英" not in used.text
    setup.clock.now = T0 + TTL + timedelta(seconds=1)
    expired = await client.get(f"/r/{setup.tokens['v-2']}")
    assert expired.status_code == 410
    assert "过期" in expired.text


async def test_get_when_someone_else_has_it(setup: Setup, client: httpx.AsyncClient) -> None:
    setup.lookup.alert = replace(ALERT, state=AlertState.ACKNOWLEDGED, acked_by="responder:v-2")
    r = await client.get(f"/r/{setup.tokens['v-1']}")
    assert r.status_code == 200
    assert "已由他人接单" in r.text
    assert 'value="accept"' not in r.text
    mine = await client.get(f"/r/{setup.tokens['v-2']}")
    assert 'value="accept"' in mine.text  # still theirs to confirm or decline
    setup.lookup.alert = replace(ALERT, state=AlertState.RESOLVED)
    closed = await client.get(f"/r/{setup.tokens['v-2']}")
    assert "已结束" in closed.text
    assert 'value="accept"' not in closed.text


async def test_post_form_accepts_once(setup: Setup, client: httpx.AsyncClient) -> None:
    url = f"/r/{setup.tokens['v-1']}"
    r = await client.post(url, data={"action": "accept"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "已接单" in r.text
    assert setup.actions.calls == [("accept", "a-1", "v-1", "link")]
    again = await client.post(url, data={"action": "accept"})
    assert again.status_code == 409
    assert "您已接单" in again.text
    assert len(setup.actions.calls) == 1


async def test_post_json_declines(setup: Setup, client: httpx.AsyncClient) -> None:
    url = f"/r/{setup.tokens['v-2']}"
    r = await client.post(url, json={"action": "decline"})
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["status"] == "done"
    assert body["action"] == "decline"
    assert body["alert_id"] == "a-1"
    assert setup.actions.calls == [("decline", "a-1", "v-2", "link")]
    again = await client.post(url, json={"action": "accept"})
    assert again.status_code == 409
    assert again.json()["status"] == "used"
    assert again.json()["used_for"] == "decline"


async def test_post_decline_link_without_body(setup: Setup, client: httpx.AsyncClient) -> None:
    r = await client.post(f"/r/{setup.tokens['v-1']}?action=decline")
    assert r.status_code == 200
    assert setup.actions.calls == [("decline", "a-1", "v-1", "link")]


async def test_post_statuses(setup: Setup, client: httpx.AsyncClient) -> None:
    url = f"/r/{setup.tokens['v-1']}"
    assert (await client.post("/r/" + "B" * 32, json={"action": "accept"})).status_code == 404

    for bad in ({"action": "dance"}, {"nothing": 1}):
        r = await client.post(url, json=bad)
        assert r.status_code == 422
        assert r.json()["status"] == "bad_action"
        assert "accept" in r.json()["detail"]
    r = await client.post(url, data={"action": "maybe"})
    assert r.status_code == 422
    assert "接单" in r.text
    r = await client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["detail"]
    r = await client.post(url, json=["accept"])
    assert r.status_code == 422
    r = await client.post(url, files={"action": ("a", b"accept")})  # multipart: unsupported
    assert r.status_code == 422
    r = await client.post(url, content=b"action=accept&" + b"x" * 5000)
    assert r.status_code == 413
    assert setup.actions.calls == []  # none of that burnt the link

    setup.actions.answer, setup.actions.acked_by = "taken", "v-9"
    taken = await client.post(url, json={"action": "accept"})
    assert taken.status_code == 409
    assert taken.json()["status"] == "taken"

    setup.clock.now = T0 + TTL
    expired = await client.post(f"/r/{setup.tokens['v-2']}", json={"action": "accept"})
    assert expired.status_code == 410
    assert expired.json()["status"] == "expired"


async def test_rate_limit_per_client_address(setup: Setup) -> None:
    app = app_for(setup.service, per_minute=3)
    url = "/r/" + "C" * 32
    near = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
    far = httpx.ASGITransport(app=app, client=("10.0.0.8", 5000))
    async with (
        httpx.AsyncClient(transport=near, base_url="http://gw") as a,
        httpx.AsyncClient(transport=far, base_url="http://gw") as b,
    ):
        codes = [(await a.get(url)).status_code for _ in range(3)]
        assert codes == [404, 404, 404]
        limited = await a.post(url, json={"action": "accept"})
        assert limited.status_code == 429
        assert limited.json()["status"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await a.get(url)).status_code == 429
        assert (await b.get(url)).status_code == 404  # someone else is not affected


async def test_concurrent_double_post_acts_once(setup: Setup, client: httpx.AsyncClient) -> None:
    url = f"/r/{setup.tokens['v-1']}"
    results = await asyncio.gather(*(client.post(url, json={"action": "accept"}) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 409, 409, 409, 409]
    assert len(setup.actions.calls) == 1


# -- with the real SQLite store --------------------------------------------------------------
class StoreActions:
    """Accept/decline straight on the store, as the engine does (conditional transitions)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls = 0

    async def accept(self, alert_id: str, responder_id: str, via: str) -> Answer:
        self.calls += 1
        entry = TimelineEntry(alert_id, T0, f"responder:{responder_id}", "accepted")
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN,),
            to_state=AlertState.ACKNOWLEDGED,
            entry=entry,
            acked_by=f"responder:{responder_id}",
        )
        if alert is not None:
            return Answer("done", alert)
        current = await self.store.get_alert(alert_id)
        if current is None:
            return Answer("not_found")
        return Answer("taken" if current.state is AlertState.ACKNOWLEDGED else "closed", current)

    async def decline(self, alert_id: str, responder_id: str, via: str) -> Answer:
        self.calls += 1
        entry = TimelineEntry(alert_id, T0, f"responder:{responder_id}", "declined")
        await self.store.escalate_now(alert_id, entry)
        return Answer("done", await self.store.get_alert(alert_id))


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[SqliteStore]:
    store = open_store(sqlite_url)
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_with_the_sqlite_store(sqlite_store: SqliteStore) -> None:
    opened = await sqlite_store.open_or_join(
        NewAlert(
            id="a-1",
            kind="sos",
            priority=Priority.P1,
            opened_at=T0,
            steps=(),
            first_due_at=T0,
            device_id="btn-1",
            resident_id="r1",
        )
    )
    alert_id = opened.alert.id
    directory = InMemoryRegistry(devices=[DEVICE], residents=[RESIDENT])
    actions = StoreActions(sqlite_store)
    clock = Clock()
    service = AcceptService(
        sqlite_store, actions, RegistryLookup(sqlite_store, directory), clock=clock
    )
    tokens = await issue_tokens(sqlite_store, alert_id, ["v-1", "v-2", "v-3"], T0, TTL)
    rows = await sqlite_store.query("SELECT token_hash FROM accept_tokens")
    assert {r[0] for r in rows} == {hash_token(t) for t in tokens.values()}

    transport = httpx.ASGITransport(app=app_for(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        page = await c.get(f"/r/{tokens['v-1']}")
        assert page.status_code == 200
        assert "张秀英" in page.text
        assert actions.calls == 0

        # v-1 double-taps while v-2 taps too: one accept wins, exactly once.
        results = await asyncio.gather(
            c.post(f"/r/{tokens['v-1']}", data={"action": "accept"}),
            c.post(f"/r/{tokens['v-1']}", data={"action": "accept"}),
            c.post(f"/r/{tokens['v-2']}", json={"action": "accept"}),
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409, 409]
        alert = await sqlite_store.get_alert(alert_id)
        assert alert is not None
        assert alert.state is AlertState.ACKNOWLEDGED
        assert alert.acked_by in ("responder:v-1", "responder:v-2")

        loser = "v-2" if alert.acked_by == "responder:v-1" else "v-1"
        assert "已由他人接单" in (await c.get(f"/r/{tokens['v-3']}")).text
        assert (await c.get(f"/r/{tokens[loser]}")).status_code == 409  # its link is used

        clock.now = T0 + TTL
        expired = await c.post(f"/r/{tokens['v-3']}", json={"action": "accept"})
        assert expired.status_code == 410
