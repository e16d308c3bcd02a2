"""Checking a scenario's expectations against the gateway's database.

Only the stable surface is read: the views ``v_alerts`` and ``v_devices``, and the tables
``alert_timeline`` (every state change and notification attempt) and ``responders`` (roles).
An alert counts for an expectation when it was opened *or joined* (a ``repeat``: the same
device and kind was still active, e.g. from an earlier run of the scenario on the same site)
after the expectation's reference time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.storage.base import Store
from simulators.scenario import (
    AlertExpect,
    AlertFilter,
    EscalationExpect,
    Expectation,
    NoAlertExpect,
)

POLL = 0.2
# The gateway may stamp with its own clock (offline alerts, notifications): allow for a little
# skew between the machine running the scenario and the gateway's.
CLOCK_SLOP = timedelta(seconds=1.0)
# After a window closes, what happened just before its end may still be committing.
SETTLE = 0.5


def as_utc(value: object) -> datetime:
    """A timestamp column: datetime (PostgreSQL, SQLite with declared types) or ISO text."""
    if isinstance(value, datetime):
        stamp = value
    else:
        stamp = datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _detail(raw: object) -> dict[str, Any]:
    """A timeline ``detail`` column: JSON text (SQLite) or already decoded (PostgreSQL)."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class SeenAlert:
    id: str
    kind: str
    priority: str
    state: str
    device_id: str | None
    resident_id: str | None
    building: str | None
    first_seen: datetime  # the first opened/repeat timeline entry since the reference
    opened: bool  # False: only joined an alert that was already active (a "repeat")

    def matches(self, f: AlertFilter) -> bool:
        return (
            (f.priority is None or self.priority == f.priority.value)
            and (f.kind is None or self.kind == f.kind)
            and (f.device is None or self.device_id == f.device)
            and (f.building is None or self.building == f.building)
            and (f.resident is None or self.resident_id == f.resident)
            and (f.state is None or self.state == f.state.value)
        )


@dataclass(frozen=True, slots=True)
class Notification:
    alert_id: str
    at: datetime
    recipient: str
    ok: bool


class Observer:
    """Reads what the gateway did."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._roles: dict[str, str] | None = None

    async def alerts_since(self, since: datetime) -> list[SeenAlert]:
        rows = await self.store.query(
            "SELECT a.id, a.kind, a.priority, a.state, a.device_id, a.resident_id,"
            " COALESCE(d.building, r.building), t.at, t.action"
            " FROM alert_timeline t"
            " JOIN v_alerts a ON a.id = t.alert_id"
            " LEFT JOIN v_devices d ON d.device_id = a.device_id"
            " LEFT JOIN residents r ON r.resident_id = a.resident_id"
            " WHERE t.action IN ('opened', 'repeat') AND t.at >= ?",
            (since,),
        )
        seen: dict[str, SeenAlert] = {}
        for alert_id, kind, priority, state, device, resident, building, at, action in rows:
            stamp = as_utc(at)
            known = seen.get(str(alert_id))
            opened = action == "opened" or (known is not None and known.opened)
            first = stamp if known is None else min(stamp, known.first_seen)
            seen[str(alert_id)] = SeenAlert(
                str(alert_id),
                str(kind),
                str(priority),
                str(state),
                None if device is None else str(device),
                None if resident is None else str(resident),
                None if building is None else str(building),
                first,
                opened,
            )
        return sorted(seen.values(), key=lambda a: a.first_seen)

    async def notifications_since(self, since: datetime) -> list[Notification]:
        rows = await self.store.query(
            "SELECT alert_id, at, detail FROM alert_timeline WHERE action = 'notify' AND at >= ?",
            (since,),
        )
        found = []
        for alert_id, at, raw in rows:
            detail = _detail(raw)
            found.append(
                Notification(
                    str(alert_id),
                    as_utc(at),
                    str(detail.get("recipient", "")),
                    bool(detail.get("ok", False)),
                )
            )
        return sorted(found, key=lambda n: n.at)

    async def roles(self) -> dict[str, str]:
        if self._roles is None:
            rows = await self.store.query("SELECT responder_id, role FROM responders")
            self._roles = {str(r): str(role) for r, role in rows}
        return self._roles

    async def seen_online(self, device_ids: Sequence[str], since: datetime) -> int:
        """How many of ``device_ids`` the gateway has heard from (and holds online) since."""
        if not device_ids:
            return 0
        marks = ", ".join("?" for _ in device_ids)
        rows = await self.store.query(
            f"SELECT count(*) FROM v_devices WHERE device_id IN ({marks})"
            " AND online AND last_seen >= ?",
            (*device_ids, since),
        )
        return int(rows[0][0])


@dataclass(frozen=True, slots=True)
class Outcome:
    expect: Expectation
    passed: bool
    detail: str  # what was seen, for the report
    effective_within: float


@dataclass(frozen=True, slots=True)
class Reference:
    """When an expectation's clock started: wall time (to compare with database stamps) and
    the monotonic time (to know when to give up)."""

    wall: datetime
    mono: float


def _offset(at: datetime, ref: Reference) -> float:
    return (at - ref.wall).total_seconds()


def _fmt(seconds: float) -> str:
    # Stamps of the same instant from two clocks (ours, the database's) may differ by a hair.
    if seconds > -0.005:
        return f"+{max(seconds, 0.0):.2f}s"
    return f"{seconds:.2f}s"


def target_matches(target: str, recipient: str, roles: dict[str, str]) -> bool:
    if target == "any":
        return True
    if target == "contacts":
        return recipient.startswith("contact:")
    if target.startswith("role:"):
        kind, _, rid = recipient.partition(":")
        return kind == "responder" and roles.get(rid) == target.removeprefix("role:")
    return recipient == target


async def check(
    observer: Observer, expect: Expectation, ref: Reference, within: float, not_before: float
) -> Outcome:
    """Poll until the expectation is decided. ``within`` and ``not_before`` are already scaled
    (seconds after ``ref``)."""
    if isinstance(expect, AlertExpect):
        return await _check_alert(observer, expect, ref, within)
    if isinstance(expect, NoAlertExpect):
        return await _check_no_alert(observer, expect, ref, within)
    return await _check_escalation(observer, expect, ref, within, not_before)


async def _sleep_until(mono: float) -> None:
    await asyncio.sleep(max(0.0, min(POLL, mono - time.monotonic())))


async def _check_alert(
    observer: Observer, expect: AlertExpect, ref: Reference, within: float
) -> Outcome:
    deadline = ref.mono + within
    matching: list[SeenAlert] = []
    while True:
        alerts = await observer.alerts_since(ref.wall - CLOCK_SLOP)
        matching = [a for a in alerts if a.matches(expect.filter)]
        elapsed = time.monotonic() - ref.mono
        if len(matching) >= expect.count:
            nth = matching[expect.count - 1]
            where = ", ".join(a.device_id or a.resident_id or a.id for a in matching[:6])
            return Outcome(
                expect,
                True,
                f"{len(matching)} seen ({where}); the {_ordinal(expect.count)} opened "
                f"{_fmt(_offset(nth.first_seen, ref))}, seen {_fmt(elapsed)}"
                + _joined_note(matching),
                within,
            )
        if time.monotonic() >= deadline:
            break
        await _sleep_until(deadline)
    others = [a for a in alerts if not a.matches(expect.filter)]
    hint = ""
    if others:
        shown = "; ".join(
            f"{a.priority} {a.kind} {a.device_id or a.resident_id} ({a.state})" for a in others[:4]
        )
        hint = f"; other alerts meanwhile: {shown}"
    return Outcome(
        expect, False, f"{len(matching)} of {expect.count} seen in {within:.1f}s{hint}", within
    )


def _joined_note(alerts: Sequence[SeenAlert]) -> str:
    joined = [a for a in alerts if not a.opened]
    if not joined:
        return ""
    return (
        f" — {len(joined)} joined an alert already active before the scenario (repeat); "
        "close earlier test alerts for a clean run"
    )


def _ordinal(n: int) -> str:
    if n in (1, 2, 3):
        return ("first", "second", "third")[n - 1]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def _check_no_alert(
    observer: Observer, expect: NoAlertExpect, ref: Reference, within: float
) -> Outcome:
    end_wall = ref.wall + timedelta(seconds=within)
    deadline = ref.mono + within + SETTLE
    while True:
        alerts = await observer.alerts_since(ref.wall - CLOCK_SLOP)
        bad = [a for a in alerts if a.matches(expect.filter) and a.first_seen <= end_wall]
        if bad:
            first = bad[0]
            return Outcome(
                expect,
                False,
                f"{len(bad)} opened: first {first.priority} {first.kind} "
                f"{first.device_id or first.resident_id} {_fmt(_offset(first.first_seen, ref))}",
                within,
            )
        if time.monotonic() >= deadline:
            return Outcome(expect, True, f"none in {within:.1f}s", within)
        await _sleep_until(deadline)


async def _check_escalation(
    observer: Observer,
    expect: EscalationExpect,
    ref: Reference,
    within: float,
    not_before: float,
) -> Outcome:
    deadline = ref.mono + within + SETTLE
    roles = await observer.roles()
    notes: list[Notification] = []
    while True:
        alerts = await observer.alerts_since(ref.wall - CLOCK_SLOP)
        ids = {a.id for a in alerts if a.matches(expect.filter)}
        notes = [
            n
            for n in await observer.notifications_since(ref.wall - CLOCK_SLOP)
            if n.alert_id in ids
        ]
        hits = [n for n in notes if target_matches(expect.target, n.recipient, roles)]
        if hits:
            first = hits[0]
            offset = _offset(first.at, ref)
            said = f"{first.recipient} notified {_fmt(offset)}" + ("" if first.ok else " (failed)")
            if offset < not_before:
                return Outcome(
                    expect,
                    False,
                    f"too early: {said}, expected not before {not_before:.1f}s",
                    within,
                )
            if offset <= within:
                return Outcome(expect, True, said, within)
            return Outcome(expect, False, f"too late: {said}", within)
        if time.monotonic() >= deadline:
            break
        await _sleep_until(deadline)
    if not ids:
        return Outcome(expect, False, f"no matching alert in {within:.1f}s", within)
    matched = [a for a in alerts if a.id in ids]
    reached = ", ".join(f"{n.recipient} {_fmt(_offset(n.at, ref))}" for n in notes[:6]) or "nobody"
    return Outcome(
        expect,
        False,
        f"not notified in {within:.1f}s; notified: {reached}" + _joined_note(matched),
        within,
    )
