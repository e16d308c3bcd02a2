"""The alert store contract (alerts/store.py): every test runs on SQLite and on PostgreSQL.

No sleeps anywhere: time is whatever ``now`` / ``at`` the test passes, so leases and expiry
are exact. Concurrency tests use a second store object on the same database, which is what a
second gateway instance (or a second process on the SQLite file) looks like.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from datetime import datetime, timedelta

import psycopg
import pytest

from alerts.models import (
    AcceptToken,
    Alert,
    AlertState,
    NewAlert,
    Outcome,
    PolicyStep,
    Priority,
    TimelineEntry,
    TokenStatus,
)
from alerts.store import AlertStore
from gateway.storage import schema_postgres, schema_sqlite
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.storage.conftest import CST, T0, columns_of

S = timedelta(seconds=1)
STEPS = (
    PolicyStep(("assigned", "nearest:3"), 60.0),
    PolicyStep(("role:duty",), 120.0),
    PolicyStep(("contacts", "responder:v-9"), 300.5),
)
OPEN = AlertState.OPEN
ACKED = AlertState.ACKNOWLEDGED
RESOLVED = AlertState.RESOLVED
CANCELLED = AlertState.CANCELLED
ACTIVE = (OPEN, ACKED)


def as_alerts(store: Store) -> AlertStore:
    assert isinstance(store, SqliteStore | PostgresStore)
    return store


@pytest.fixture
def alerts(store: Store) -> AlertStore:
    return as_alerts(store)


@asynccontextmanager
async def second_store(url: str) -> AsyncIterator[AlertStore]:
    """Another store object on the same database: another gateway instance."""
    other = open_store(url)
    await other.open()
    try:
        yield as_alerts(other)
    finally:
        await other.close()


def raw_execute(store: Store, sql: str) -> None:
    """A write outside the store's API (what a retention job or an operator might do)."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute(sql)
        return
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url, autocommit=True) as pg:
        pg.execute(sql.encode())


def new(
    alert_id: str = "a-1",
    *,
    device: str | None = "btn-1",
    resident: str | None = "r-1",
    kind: str = "sos",
    priority: Priority = Priority.P1,
    at: datetime = T0,
    due: datetime | None = None,
    trigger: str | None = None,
    actor: str = "device:btn-1",
    detail: str = "{}",
) -> NewAlert:
    return NewAlert(
        id=alert_id,
        kind=kind,
        priority=priority,
        opened_at=at,
        steps=STEPS,
        first_due_at=at if due is None else due,
        device_id=device,
        resident_id=resident,
        source="serial",
        source_seq=17,
        trigger_key=trigger,
        actor=actor,
        detail=detail,
    )


def entry(alert_id: str, action: str, at: datetime = T0, actor: str = "system") -> TimelineEntry:
    return TimelineEntry(alert_id, at, actor, action, json.dumps({"why": action}))


async def ack(
    store: AlertStore, alert_id: str, by: str = "v-1", at: datetime = T0 + 30 * S
) -> Alert | None:
    return await store.transition(
        alert_id,
        from_states=[OPEN],
        to_state=ACKED,
        entry=entry(alert_id, "acknowledged", at, f"responder:{by}"),
        acked_by=f"responder:{by}",
    )


async def resolve(
    store: AlertStore, alert_id: str, at: datetime = T0 + 600 * S, note: str | None = None
) -> Alert | None:
    return await store.transition(
        alert_id,
        from_states=ACTIVE,
        to_state=RESOLVED,
        entry=entry(alert_id, "resolved", at, "user:alice"),
        outcome=Outcome.ASSISTED,
        note=note,
    )


async def actions(store: AlertStore, alert_id: str) -> list[str]:
    return [e.action for e in await store.timeline(alert_id)]


def ids(rows: Sequence[Alert]) -> list[str]:
    return [r.id for r in rows]


# -- open / join ---------------------------------------------------------------------------
async def test_open_then_repeat_joins(alerts: AlertStore) -> None:
    first = await alerts.open_or_join(new("a-1", detail='{"event_id":"e1","张":1}'))
    assert (first.opened, first.applied) == (True, True)
    a = first.alert
    assert (a.id, a.kind, a.priority, a.state, a.count) == ("a-1", "sos", Priority.P1, OPEN, 1)
    assert (a.device_id, a.resident_id, a.source, a.source_seq) == ("btn-1", "r-1", "serial", 17)
    assert a.steps == STEPS
    assert (a.step_index, a.next_due_at, a.claim) == (0, T0, None)
    assert (a.opened_at, a.updated_at) == (T0, T0)
    assert (a.acked_at, a.acked_by, a.resolved_at, a.outcome) == (None, None, None, None)
    assert json.loads(a.detail) == {"event_id": "e1", "张": 1}
    assert a.opened_at.utcoffset() is not None

    again = await alerts.open_or_join(new("a-2", at=T0 + 5 * S, actor="device:btn-1#2"))
    assert (again.opened, again.applied) == (False, True)
    assert (again.alert.id, again.alert.count) == ("a-1", 2)
    assert again.alert.updated_at == T0 + 5 * S
    assert again.alert.next_due_at == T0  # a repeat does not move the escalation timer
    assert await alerts.get_alert("a-2") is None
    assert await alerts.get_alert("a-1") == again.alert

    timeline = await alerts.timeline("a-1")
    assert [(e.action, e.actor, e.at) for e in timeline] == [
        ("opened", "device:btn-1", T0),
        ("repeat", "device:btn-1#2", T0 + 5 * S),
    ]
    assert all(e.alert_id == "a-1" for e in timeline)


async def test_a_late_repeat_does_not_move_updated_at_back(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", at=T0))
    late = await alerts.open_or_join(new("a-2", at=T0 - 60 * S))
    assert (late.alert.count, late.alert.updated_at) == (2, T0)


async def test_same_trigger_twice_changes_nothing(alerts: AlertStore) -> None:
    first = await alerts.open_or_join(new("a-1", trigger="btn-1/evt-1"))
    assert first.applied
    # A redelivered event, even with a freshly generated alert id.
    dup = await alerts.open_or_join(new("a-9", trigger="btn-1/evt-1", at=T0 + S))
    assert (dup.opened, dup.applied) == (False, False)
    assert dup.alert == first.alert
    assert await alerts.get_alert("a-9") is None

    # A trigger that joined is remembered with the alert it joined.
    joined = await alerts.open_or_join(new("a-2", trigger="btn-1/evt-2", at=T0 + 2 * S))
    assert (joined.opened, joined.applied, joined.alert.count) == (False, True, 2)
    redelivered = await alerts.open_or_join(new("a-3", trigger="btn-1/evt-2", at=T0 + 3 * S))
    assert (redelivered.applied, redelivered.alert.id, redelivered.alert.count) == (
        False,
        "a-1",
        2,
    )
    assert await actions(alerts, "a-1") == ["opened", "repeat"]


async def test_a_trigger_stays_applied_after_its_alert_closed(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", trigger="evt-1"))
    await resolve(alerts, "a-1")
    dup = await alerts.open_or_join(new("a-2", trigger="evt-1", at=T0 + 700 * S))
    assert (dup.applied, dup.alert.id, dup.alert.state) == (False, "a-1", RESOLVED)
    assert await alerts.get_alert("a-2") is None


async def test_a_trigger_whose_alert_was_pruned_applies_afresh(
    alerts: AlertStore, store: Store
) -> None:
    await alerts.open_or_join(new("a-1", trigger="evt-1"))
    await resolve(alerts, "a-1")
    # A retention run that dropped the alert but (wrongly) kept its trigger row.
    raw_execute(store, "DELETE FROM alerts WHERE id = 'a-1'")
    again = await alerts.open_or_join(new("a-2", trigger="evt-1", at=T0 + 700 * S))
    assert (again.opened, again.applied, again.alert.id) == (True, True, "a-2")
    dup = await alerts.open_or_join(new("a-3", trigger="evt-1", at=T0 + 701 * S))
    assert (dup.applied, dup.alert.id) == (False, "a-2")


async def test_after_resolve_a_new_alert_opens(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    assert await ack(alerts, "a-1") is not None
    # Acknowledged is still active: a repeat joins it.
    joined = await alerts.open_or_join(new("a-2", at=T0 + 40 * S))
    assert (joined.alert.id, joined.alert.count, joined.alert.state) == ("a-1", 2, ACKED)
    await resolve(alerts, "a-1")

    fresh = await alerts.open_or_join(new("a-3", at=T0 + 700 * S))
    assert (fresh.opened, fresh.alert.id, fresh.alert.count) == (True, "a-3", 1)
    old = await alerts.get_alert("a-1")
    assert old is not None
    assert old.state == RESOLVED
    # Another kind on the same device, and the same kind on another device, are separate.
    fall = await alerts.open_or_join(new("a-4", kind="fall", at=T0 + 701 * S))
    other = await alerts.open_or_join(new("a-5", device="btn-2", at=T0 + 702 * S))
    assert fall.opened
    assert other.opened


async def test_welfare_alert_without_device_is_keyed_by_resident(alerts: AlertStore) -> None:
    def welfare(alert_id: str, resident: str, at: datetime) -> NewAlert:
        return new(
            alert_id,
            device=None,
            resident=resident,
            kind="welfare_check",
            priority=Priority.P2,
            at=at,
            actor="system",
        )

    first = await alerts.open_or_join(welfare("w-1", "r-9", T0))
    assert first.opened
    assert first.alert.device_id is None
    again = await alerts.open_or_join(welfare("w-2", "r-9", T0 + 3600 * S))
    assert (again.opened, again.alert.id, again.alert.count) == (False, "w-1", 2)
    someone_else = await alerts.open_or_join(welfare("w-3", "r-10", T0))
    assert someone_else.opened
    # The same kind raised through a device of that resident is keyed by the device.
    by_device = await alerts.open_or_join(
        new(
            "w-4",
            device="pir-1",
            kind="welfare_check",
            priority=Priority.P2,
            at=T0 + S,
            resident="r-9",
        )
    )
    assert by_device.opened
    assert ids(await alerts.active_alerts(resident_id="r-9")) == ["w-4", "w-1"]  # newest first


async def test_an_alert_needs_a_device_or_a_resident(alerts: AlertStore) -> None:
    with pytest.raises(ValueError, match="neither a device nor a resident"):
        await alerts.open_or_join(new(device=None, resident=None))


async def test_naive_datetimes_are_refused(alerts: AlertStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await alerts.open_or_join(new(at=datetime(2026, 3, 14, 9, 0)))
    with pytest.raises(ValueError, match="naive"):
        await alerts.claim_due(datetime(2026, 3, 14, 9, 0), lease=30)


async def test_concurrent_openers_make_exactly_one_alert(
    alerts: AlertStore, store_url: str
) -> None:
    async with second_store(store_url) as other:
        results = await asyncio.gather(
            alerts.open_or_join(new("a-1", trigger="e-1")),
            other.open_or_join(new("a-2", trigger="e-2")),
        )
    assert sorted(r.opened for r in results) == [False, True]
    assert all(r.applied for r in results)
    (winner,) = [r.alert.id for r in results if r.opened]
    final = await alerts.get_alert(winner)
    assert final is not None
    assert final.count == 2
    assert len(await alerts.active_alerts(device_id="btn-1")) == 1
    assert await actions(alerts, winner) == ["opened", "repeat"]


async def test_many_concurrent_openers_across_instances(alerts: AlertStore, store_url: str) -> None:
    async with second_store(store_url) as other:
        stores = [alerts, other]
        results = await asyncio.gather(
            *(stores[i % 2].open_or_join(new(f"a-{i}", trigger=f"e-{i}")) for i in range(12)),
            # The same events redelivered to the other instance at the same time.
            *(stores[(i + 1) % 2].open_or_join(new(f"b-{i}", trigger=f"e-{i}")) for i in range(4)),
        )
    assert sum(r.opened for r in results) == 1
    assert sum(r.applied for r in results) == 12
    (only,) = await alerts.active_alerts(device_id="btn-1")
    assert only.count == 12
    assert {r.alert.id for r in results} == {only.id}
    assert (await actions(alerts, only.id)).count("repeat") == 11


# -- transitions ---------------------------------------------------------------------------
async def test_ack_only_from_open_and_it_stops_escalation(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    acked = await ack(alerts, "a-1", by="v-1", at=T0 + 30 * S)
    assert acked is not None
    assert (acked.state, acked.acked_by, acked.acked_at) == (ACKED, "responder:v-1", T0 + 30 * S)
    assert acked.assignee == "responder:v-1"
    assert (acked.next_due_at, acked.claim, acked.updated_at) == (None, None, T0 + 30 * S)
    assert await ack(alerts, "a-1", by="v-2") is None  # not open any more
    assert await alerts.get_alert("a-1") == acked
    assert await actions(alerts, "a-1") == ["opened", "acknowledged"]
    assert await ack(alerts, "no-such-alert") is None


async def test_ack_without_a_responder_records_the_actor(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    acked = await alerts.transition(
        "a-1",
        from_states=[OPEN],
        to_state=ACKED,
        entry=entry("a-1", "acknowledged", T0 + S, "user:alice"),
    )
    assert acked is not None
    assert acked.acked_by == "user:alice"


async def test_resolve_from_open_or_acknowledged_once(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    await alerts.open_or_join(new("a-2", device="btn-2"))
    await ack(alerts, "a-2")

    for alert_id in ("a-1", "a-2"):
        done = await resolve(alerts, alert_id, at=T0 + 600 * S, note="张阿姨摔倒，已送医")
        assert done is not None
        assert (done.state, done.resolved_by, done.resolved_at) == (
            RESOLVED,
            "user:alice",
            T0 + 600 * S,
        )
        assert (done.outcome, done.note, done.next_due_at) == (
            Outcome.ASSISTED,
            "张阿姨摔倒，已送医",
            None,
        )
        assert await resolve(alerts, alert_id, at=T0 + 700 * S) is None  # second resolve
        assert (await actions(alerts, alert_id))[-1] == "resolved"
        assert (await actions(alerts, alert_id)).count("resolved") == 1
    still = await alerts.get_alert("a-2")
    assert still is not None
    assert still.acked_by == "responder:v-1"


async def test_cancel_and_empty_from_states(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", kind="water_leak", priority=Priority.P2))
    assert (
        await alerts.transition(
            "a-1", from_states=[], to_state=CANCELLED, entry=entry("a-1", "cancelled")
        )
        is None
    )
    cancelled = await alerts.transition(
        "a-1",
        from_states=[OPEN],
        to_state=CANCELLED,
        entry=entry("a-1", "cancelled", T0 + 5 * S, "device:btn-1"),
    )
    assert cancelled is not None
    assert (cancelled.state, cancelled.resolved_by, cancelled.outcome) == (
        CANCELLED,
        "device:btn-1",
        None,
    )
    assert not cancelled.active


async def test_back_to_open_restarts_escalation(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    await ack(alerts, "a-1", at=T0 + 30 * S)
    reopened = await alerts.transition(
        "a-1",
        from_states=[ACKED],
        to_state=OPEN,
        entry=entry("a-1", "ack_timeout", T0 + 330 * S),
    )
    assert reopened is not None
    assert (reopened.state, reopened.next_due_at) == (OPEN, T0 + 330 * S)
    assert (reopened.acked_by, reopened.acked_at) == (None, None)  # nobody holds it now
    (due,) = await alerts.claim_due(T0 + 330 * S, lease=30)
    assert due.alert.id == "a-1"


async def test_reactivating_a_closed_alert_never_makes_two_active(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    await resolve(alerts, "a-1")
    await alerts.open_or_join(new("a-2", at=T0 + 700 * S))  # the key's active alert now
    back = await alerts.transition(
        "a-1", from_states=[RESOLVED], to_state=OPEN, entry=entry("a-1", "reopened")
    )
    assert back is None
    old = await alerts.get_alert("a-1")
    assert old is not None
    assert old.state == RESOLVED
    assert "reopened" not in await actions(alerts, "a-1")


async def test_a_note_is_kept_when_closing_without_one(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    await resolve(alerts, "a-1", note="first")
    back = await alerts.transition(
        "a-1", from_states=[RESOLVED], to_state=OPEN, entry=entry("a-1", "reopened")
    )
    assert back is not None
    closed = await resolve(alerts, "a-1", at=T0 + 900 * S)
    assert closed is not None
    assert closed.note == "first"


# -- escalation timers ---------------------------------------------------------------------
async def seed_due(store: AlertStore) -> None:
    """p2 due 10 s ago, p1-new due 5 s ago, p1-old due 20 s ago, plus alerts never due now."""
    await store.open_or_join(
        new("p2", device="w-1", kind="water_leak", priority=Priority.P2, due=T0 - 10 * S)
    )
    await store.open_or_join(new("p1-new", device="b-1", due=T0 - 5 * S))
    await store.open_or_join(new("p1-old", device="b-2", due=T0 - 20 * S))
    await store.open_or_join(new("later", device="b-3", due=T0 + 60 * S))
    await store.open_or_join(new("acked", device="b-4", due=T0 - 30 * S))
    await ack(store, "acked")
    await store.open_or_join(new("closed", device="b-5", due=T0 - 30 * S))
    await resolve(store, "closed")


async def test_claim_due_takes_due_open_alerts_p1_first(alerts: AlertStore) -> None:
    await seed_due(alerts)
    due = await alerts.claim_due(T0, lease=30, limit=10)
    assert [d.alert.id for d in due] == ["p1-old", "p1-new", "p2"]
    assert len({d.claim for d in due}) == 3
    assert all(d.claim for d in due)
    for d in due:
        assert d.alert.claim == d.claim
        assert d.alert.next_due_at == T0 + 30 * S  # the lease
        stored = await alerts.get_alert(d.alert.id)
        assert stored is not None
        assert stored.claim == d.claim


async def test_claim_due_respects_limit(alerts: AlertStore) -> None:
    await seed_due(alerts)
    assert [d.alert.id for d in await alerts.claim_due(T0, lease=30, limit=1)] == ["p1-old"]
    assert [d.alert.id for d in await alerts.claim_due(T0, lease=30, limit=1)] == ["p1-new"]
    assert await alerts.claim_due(T0, lease=30, limit=0) == []
    with pytest.raises(ValueError, match="lease"):
        await alerts.claim_due(T0, lease=0)


async def test_a_lease_hides_the_step_until_it_expires(alerts: AlertStore) -> None:
    await seed_due(alerts)
    first = await alerts.claim_due(T0, lease=30)
    assert len(first) == 3
    assert await alerts.claim_due(T0 + 29 * S, lease=30) == []
    # The runner died: after the lease the step is due again, under a new claim.
    again = await alerts.claim_due(T0 + 30 * S, lease=30)
    # All three were due at the same instant (the lease end): P1 first, then by id.
    assert [d.alert.id for d in again] == ["p1-new", "p1-old", "p2"]
    old_claims = {d.alert.id: d.claim for d in first}
    assert all(d.claim != old_claims[d.alert.id] for d in again)
    # The first runner wakes up late: its claim is stale.
    stale = first[0]
    assert not await alerts.finish_step(
        stale.alert.id, stale.claim, next_step_index=1, next_due_at=T0 + 90 * S
    )


async def test_finish_step_needs_the_current_claim(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    (due,) = await alerts.claim_due(T0, lease=30)
    assert not await alerts.finish_step("a-1", "not-the-claim", next_step_index=1, next_due_at=T0)
    assert await alerts.finish_step("a-1", due.claim, next_step_index=1, next_due_at=T0 + 60 * S)
    done = await alerts.get_alert("a-1")
    assert done is not None
    assert (done.step_index, done.next_due_at, done.claim) == (1, T0 + 60 * S, None)
    # Finishing twice is stale too.
    assert not await alerts.finish_step(
        "a-1", due.claim, next_step_index=2, next_due_at=T0 + 90 * S
    )
    assert not await alerts.finish_step("nope", due.claim, next_step_index=1, next_due_at=None)


async def test_finish_step_after_an_ack_is_stale(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1"))
    (due,) = await alerts.claim_due(T0, lease=30)
    await ack(alerts, "a-1", at=T0 + 2 * S)
    assert not await alerts.finish_step(
        "a-1", due.claim, next_step_index=1, next_due_at=T0 + 60 * S
    )
    after = await alerts.get_alert("a-1")
    assert after is not None
    assert (after.state, after.step_index, after.next_due_at) == (ACKED, 0, None)


async def test_escalate_now(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", due=T0 + 60 * S))
    assert await alerts.claim_due(T0 + 10 * S, lease=30) == []
    assert await alerts.escalate_now("a-1", entry("a-1", "declined", T0 + 10 * S, "responder:v-1"))
    moved = await alerts.get_alert("a-1")
    assert moved is not None
    assert moved.next_due_at == T0 + 10 * S
    (due,) = await alerts.claim_due(T0 + 10 * S, lease=30)
    # A decline while a step is running clears its claim: that runner's finish is stale.
    assert await alerts.escalate_now("a-1", entry("a-1", "declined", T0 + 11 * S))
    assert not await alerts.finish_step("a-1", due.claim, next_step_index=1, next_due_at=None)
    assert (await actions(alerts, "a-1")) == ["opened", "declined", "declined"]

    await ack(alerts, "a-1", at=T0 + 20 * S)
    assert not await alerts.escalate_now("a-1", entry("a-1", "declined", T0 + 21 * S))
    assert not await alerts.escalate_now("nope", entry("nope", "declined"))
    assert (await actions(alerts, "a-1")).count("declined") == 2


async def test_next_due_time(alerts: AlertStore) -> None:
    assert await alerts.next_due_time() is None
    await seed_due(alerts)
    got = await alerts.next_due_time()
    assert got == T0 - 20 * S  # the acked/closed ones (due -30 s) no longer count
    assert got is not None
    assert got.utcoffset() is not None
    await alerts.claim_due(T0, lease=30)
    assert await alerts.next_due_time() == T0 + 30 * S


async def test_concurrent_claimers_never_share_an_alert(alerts: AlertStore, store_url: str) -> None:
    everything = [f"a-{i:02d}" for i in range(30)]
    for i, alert_id in enumerate(everything):
        await alerts.open_or_join(new(alert_id, device=f"b-{i:02d}", due=T0 - i * S))
    async with second_store(store_url) as other:
        stores = [alerts, other]
        # Each round starts when the previous round's leases have run out, so all 30 are due
        # again: three chances for a race to hand one alert to two claimers.
        for round_ in range(3):
            now = T0 + round_ * 61 * S
            batches = await asyncio.gather(
                *(stores[i % 2].claim_due(now, lease=60, limit=3) for i in range(16))
            )
            claimed = [d.alert.id for b in batches for d in b]
            assert len(claimed) == len(set(claimed))  # nobody got an alert twice
            # SKIP LOCKED may pass over rows another claimer had locked: a later call gets them.
            rest = await other.claim_due(now, lease=60, limit=100)
            assert sorted(claimed + [d.alert.id for d in rest]) == everything


# -- accept links --------------------------------------------------------------------------
def token(h: str, *, expires: datetime, alert_id: str = "a-1", who: str = "v-1") -> AcceptToken:
    return AcceptToken(h, alert_id, who, created_at=T0, expires_at=expires)


async def test_tokens_peek_use_expire(alerts: AlertStore) -> None:
    await alerts.create_tokens(
        [token("h-ok", expires=T0 + 600 * S), token("h-old", expires=T0 - S, who="v-2")]
    )
    status, tok = await alerts.peek_token("h-ok", T0)
    assert status == TokenStatus.OK
    assert tok == token("h-ok", expires=T0 + 600 * S)
    assert await alerts.peek_token("h-nope", T0) == (TokenStatus.UNKNOWN, None)
    assert (await alerts.peek_token("h-old", T0))[0] == TokenStatus.EXPIRED
    assert (await alerts.peek_token("h-ok", T0 + 600 * S))[0] == TokenStatus.EXPIRED  # boundary

    status, used = await alerts.use_token("h-ok", T0 + S, "accept")
    assert status == TokenStatus.OK
    assert used is not None
    assert (used.used_at, used.action) == (T0 + S, "accept")
    assert (await alerts.peek_token("h-ok", T0 + 2 * S))[0] == TokenStatus.USED
    status, again = await alerts.use_token("h-ok", T0 + 2 * S, "decline")
    assert status == TokenStatus.USED
    assert again is not None
    assert again.action == "accept"
    assert (await alerts.use_token("h-old", T0, "accept"))[0] == TokenStatus.EXPIRED
    assert await alerts.use_token("h-nope", T0, "accept") == (TokenStatus.UNKNOWN, None)
    await alerts.create_tokens([])


async def test_a_link_tapped_twice_at_once_acts_once(alerts: AlertStore, store_url: str) -> None:
    await alerts.create_tokens([token("h-1", expires=T0 + 600 * S)])
    async with second_store(store_url) as other:
        stores = [alerts, other]
        results = await asyncio.gather(
            *(stores[i % 2].use_token("h-1", T0 + S, f"accept-{i}") for i in range(8))
        )
    statuses = sorted(s for s, _ in results)
    assert statuses == [TokenStatus.OK] + [TokenStatus.USED] * 7
    (winner,) = [t for s, t in results if s == TokenStatus.OK]
    assert winner is not None
    assert all(t is not None and t.action == winner.action for _, t in results)


# -- queries -------------------------------------------------------------------------------
async def test_responder_load(alerts: AlertStore) -> None:
    for i in range(4):
        await alerts.open_or_join(new(f"a-{i}", device=f"b-{i}"))
    await ack(alerts, "a-0", by="v-1")
    await ack(alerts, "a-1", by="v-1")
    await ack(alerts, "a-2", by="v-2")
    await resolve(alerts, "a-1")  # closed: no longer held
    assert await alerts.responder_load(["v-1", "v-2", "v-3", "v-1"]) == {
        "v-1": 1,
        "v-2": 1,
        "v-3": 0,
    }
    assert await alerts.responder_load([]) == {}


async def test_active_alerts_newest_first(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", kind="sos", at=T0))
    await alerts.open_or_join(new("a-2", kind="fall", at=T0 + S))
    await alerts.open_or_join(new("a-3", kind="low_battery", priority=Priority.P3, at=T0 + 2 * S))
    await alerts.open_or_join(new("b-1", device="btn-2", resident="r-2", at=T0 + 3 * S))
    await ack(alerts, "a-2")
    await resolve(alerts, "a-3")
    assert ids(await alerts.active_alerts(device_id="btn-1")) == ["a-2", "a-1"]
    assert ids(await alerts.active_alerts(resident_id="r-2")) == ["b-1"]
    assert ids(await alerts.active_alerts(device_id="btn-2", resident_id="r-1")) == [
        "b-1",
        "a-2",
        "a-1",
    ]
    assert ids(await alerts.active_alerts()) == ["b-1", "a-2", "a-1"]
    assert await alerts.active_alerts(device_id="nope") == []


async def test_list_alerts_filters_order_and_pages(alerts: AlertStore) -> None:
    plan = [
        ("p3-a", Priority.P3, 0),
        ("p1-a", Priority.P1, 10),
        ("p2-a", Priority.P2, 20),
        ("p1-b", Priority.P1, 30),
        ("p3-b", Priority.P3, 40),
        ("p1-c", Priority.P1, 50),
    ]
    for alert_id, prio, minute in plan:
        await alerts.open_or_join(
            new(alert_id, device=alert_id, priority=prio, at=T0 + timedelta(minutes=minute))
        )
    await ack(alerts, "p1-b")
    await resolve(alerts, "p3-a")

    assert ids(await alerts.list_alerts()) == ["p1-a", "p1-b", "p1-c", "p2-a", "p3-a", "p3-b"]
    assert ids(await alerts.list_alerts(states=[OPEN])) == ["p1-a", "p1-c", "p2-a", "p3-b"]
    assert ids(await alerts.list_alerts(states=[ACKED, RESOLVED])) == ["p1-b", "p3-a"]
    assert ids(await alerts.list_alerts(priorities=[Priority.P3, Priority.P2])) == [
        "p2-a",
        "p3-a",
        "p3-b",
    ]
    # since inclusive, until exclusive; any offset, compared as instants.
    since = (T0 + timedelta(minutes=10)).astimezone(CST)
    until = T0 + timedelta(minutes=40)
    assert ids(await alerts.list_alerts(since=since, until=until)) == ["p1-a", "p1-b", "p2-a"]
    assert ids(await alerts.list_alerts(states=ACTIVE, priorities=[Priority.P1], since=since)) == [
        "p1-a",
        "p1-b",
        "p1-c",
    ]
    page1 = await alerts.list_alerts(limit=4)
    page2 = await alerts.list_alerts(limit=4, offset=4)
    assert ids(page1) + ids(page2) == ids(await alerts.list_alerts())
    assert len(page2) == 2
    assert await alerts.list_alerts(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        await alerts.list_alerts(limit=-1)


async def test_timeline_order_and_detail(alerts: AlertStore) -> None:
    await alerts.open_or_join(new("a-1", detail="not json, 不是 JSON"))
    await alerts.add_timeline(
        [
            TimelineEntry("a-1", T0 + 2 * S, "system", "notify", '{"to":"v-1","ok":true}'),
            TimelineEntry("a-1", T0 + 2 * S, "system", "notify", '{"to":"v-2","ok":false}'),
            TimelineEntry("a-1", T0 + S, "system", "step", "{}"),  # earlier, written later
        ]
    )
    await alerts.add_timeline([])
    timeline = await alerts.timeline("a-1")
    assert [e.action for e in timeline] == ["opened", "step", "notify", "notify"]
    assert [json.loads(e.detail).get("to") for e in timeline[2:]] == ["v-1", "v-2"]
    # A detail that is not JSON is kept, as a JSON string.
    assert json.loads(timeline[0].detail) == "not json, 不是 JSON"
    assert await alerts.timeline("nope") == []


async def test_v_alerts_has_exactly_the_spec_columns(alerts: AlertStore, store: Store) -> None:
    assert columns_of(store, "v_alerts") == [
        "id",
        "opened_at",
        "device_id",
        "resident_id",
        "kind",
        "priority",
        "state",
        "acked_at",
        "acked_by",
        "resolved_at",
        "outcome",
    ]
    await alerts.open_or_join(new("a-1"))
    await ack(alerts, "a-1", by="v-1", at=T0 + 30 * S)
    await resolve(alerts, "a-1", at=T0 + 600 * S)
    rows = await store.query("SELECT * FROM v_alerts WHERE id = ?", ("a-1",))
    assert rows == [
        (
            "a-1",
            T0,
            "btn-1",
            "r-1",
            "sos",
            "P1",
            "resolved",
            T0 + 30 * S,
            "responder:v-1",
            T0 + 600 * S,
            "assisted",
        )
    ]


# -- durability ----------------------------------------------------------------------------
async def test_everything_survives_a_reopen(
    alerts: AlertStore, store: Store, store_url: str
) -> None:
    await alerts.open_or_join(new("a-1", due=T0 - 60 * S, trigger="e-1"))
    await alerts.open_or_join(new("a-2", device="btn-2", due=T0 + 3600 * S))
    await ack(alerts, "a-2", by="v-1")
    await alerts.create_tokens([token("h-1", expires=T0 + 600 * S)])
    before = await alerts.get_alert("a-1")
    await store.close()

    async with second_store(store_url) as reopened:
        assert await reopened.get_alert("a-1") == before
        # The timer lives in the database: an alert due while we were down is claimable.
        assert await reopened.next_due_time() == T0 - 60 * S
        (due,) = await reopened.claim_due(T0, lease=30)
        assert due.alert.id == "a-1"
        assert await reopened.finish_step(
            "a-1", due.claim, next_step_index=1, next_due_at=T0 + 60 * S
        )
        assert (await reopened.open_or_join(new("a-9", trigger="e-1"))).applied is False
        assert await reopened.responder_load(["v-1"]) == {"v-1": 1}
        assert (await reopened.peek_token("h-1", T0))[0] == TokenStatus.OK
        assert await actions(reopened, "a-2") == ["opened", "acknowledged"]
    await store.open()  # the fixture closes it


async def test_a_version_1_database_upgrades(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database as the release before the alert tables left it.
    monkeypatch.setattr(schema_sqlite, "MIGRATIONS", schema_sqlite.MIGRATIONS[:1])
    v1 = schema_postgres.migrations
    monkeypatch.setattr(schema_postgres, "migrations", lambda timescale: v1(timescale)[:1])
    old = open_store(store_url)
    await old.open()
    try:
        assert await old.migrate() == 1
        await old.upsert_devices([])
    finally:
        await old.close()
    monkeypatch.undo()

    upgraded = open_store(store_url)
    await upgraded.open()
    try:
        assert await upgraded.migrate() >= 2
        opened = await as_alerts(upgraded).open_or_join(new("a-1"))
        assert opened.opened
        assert await upgraded.query("SELECT id, state FROM v_alerts") == [("a-1", "open")]
    finally:
        await upgraded.close()
