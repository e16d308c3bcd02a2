"""Backend-neutral pieces of the alert store: the active key, row ↔ dataclass mapping, JSON.

Both backends select the same column lists in the same order, so one mapping serves both.
Instants come back as aware datetimes from PostgreSQL and from SQLite columns declared
``UTC_TEXT``; an aggregate (``min()``) loses SQLite's declared type and comes back as text,
which :func:`as_instant` parses, so callers never see the difference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

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
from gateway.storage._util import as_json_text, clean_text, dump_json, parse_utc_text

if TYPE_CHECKING:
    # Static proof that both backends implement the domain's ports and the console's reads
    # (mypy checks this; it is never imported at run time, so the SQLite-only setup still
    # never loads psycopg).
    from alerts.store import EngineStore
    from devices.registry import RegistryWriter
    from gateway.storage.base import ConsoleReads
    from gateway.storage.postgres import PostgresStore
    from gateway.storage.sqlite import SqliteStore

    def _conforms(s: SqliteStore, p: PostgresStore) -> tuple[EngineStore, EngineStore]:
        return s, p

    def _conforms_reads(s: SqliteStore, p: PostgresStore) -> tuple[ConsoleReads, ConsoleReads]:
        return s, p

    def _conforms_writer(s: SqliteStore, p: PostgresStore) -> tuple[RegistryWriter, ...]:
        return s, p


ALERT_COLUMNS: Final = (
    "id",
    "kind",
    "priority",
    "state",
    "device_id",
    "resident_id",
    "count",
    "steps",
    "step_index",
    "next_due_at",
    "claim",
    "acked_at",
    "acked_by",
    "resolved_at",
    "resolved_by",
    "outcome",
    "note",
    "source",
    "source_seq",
    "detail",
    "opened_at",
    "updated_at",
    "assignee",
    "incident_id",
)
ALERT_SELECT: Final = ", ".join(ALERT_COLUMNS)

TOKEN_COLUMNS: Final = (
    "token_hash",
    "alert_id",
    "responder_id",
    "created_at",
    "expires_at",
    "used_at",
    "action",
)
TOKEN_SELECT: Final = ", ".join(TOKEN_COLUMNS)

TIMELINE_SELECT: Final = "alert_id, at, actor, action, detail"

# Literal SQL for the partial unique index and for the ON CONFLICT target that must name it:
# PostgreSQL infers the index only when the predicate matches, so both use this one string.
ACTIVE_PREDICATE: Final = "state IN ('open', 'acknowledged')"

OPENED: Final = "opened"
REPEAT: Final = "repeat"

# A concurrent opener/closer can make both the join and the insert miss (the active alert we
# would join was closed between the two statements); each retry sees newer committed state,
# so a couple of rounds always settle it. More than this means a bug, not contention.
OPEN_ATTEMPTS: Final = 5


def active_key(device_id: str | None, resident_id: str | None, kind: str) -> str:
    """The identity repeats share: the device (or, with no device, the resident) and kind.

    Kinds are fixed identifiers (``sos``, ``welfare_check``) without ``|``, so the part after
    the last ``|`` is always the kind and two different pairs never share a key.
    """
    if device_id is not None:
        who = device_id
    elif resident_id is not None:
        who = f"resident:{resident_id}"
    else:
        raise ValueError(f"alert of kind {kind!r} names neither a device nor a resident")
    if "|" in kind:
        raise ValueError(f"alert kind {kind!r} must not contain '|'")
    return f"{who}|{kind}"


def steps_json(steps: Sequence[PolicyStep]) -> str:
    return dump_json([{"targets": list(s.targets), "ack_timeout": s.ack_timeout} for s in steps])


def steps_from_json(raw: str | bytes) -> tuple[PolicyStep, ...]:
    data = json.loads(raw)
    if not isinstance(data, list):
        raise ValueError(f"alert steps must be a JSON list, got {type(data).__name__}")
    return tuple(
        PolicyStep(targets=tuple(str(t) for t in s["targets"]), ack_timeout=float(s["ack_timeout"]))
        for s in data
    )


def detail_json(detail: str) -> str:
    """Caller-supplied JSON, kept byte for byte; anything else is stored as a JSON string
    rather than refused (an alert must never fail to open over its detail text)."""
    return as_json_text(detail)


def note_text(note: str | None) -> str | None:
    return None if note is None else clean_text(note)


def as_instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str | bytes):
        return parse_utc_text(value)
    raise TypeError(f"expected an instant, got {type(value).__name__}: {value!r}")


def _instant(value: Any) -> datetime:
    ts = as_instant(value)
    if ts is None:
        raise ValueError("a required instant is NULL in the database")
    return ts


def alert_from_row(row: Sequence[Any]) -> Alert:
    """Map a row selected with :data:`ALERT_SELECT` (same order) to an :class:`Alert`."""
    (
        id_,
        kind,
        priority,
        state,
        device_id,
        resident_id,
        count,
        steps,
        step_index,
        next_due_at,
        claim,
        acked_at,
        acked_by,
        resolved_at,
        resolved_by,
        outcome,
        note,
        source,
        source_seq,
        detail,
        opened_at,
        updated_at,
        assignee,
        incident_id,
    ) = row
    return Alert(
        id=id_,
        kind=kind,
        priority=Priority(priority),
        state=AlertState(state),
        opened_at=_instant(opened_at),
        updated_at=_instant(updated_at),
        device_id=device_id,
        resident_id=resident_id,
        count=int(count),
        steps=steps_from_json(steps),
        step_index=int(step_index),
        next_due_at=as_instant(next_due_at),
        claim=claim,
        acked_at=as_instant(acked_at),
        acked_by=acked_by,
        assignee=assignee,
        incident_id=incident_id,
        resolved_at=as_instant(resolved_at),
        resolved_by=resolved_by,
        outcome=None if outcome is None else Outcome(outcome),
        note=note,
        source=source,
        source_seq=None if source_seq is None else int(source_seq),
        detail=str(detail),
    )


def timeline_from_row(row: Sequence[Any]) -> TimelineEntry:
    alert_id, at, actor, action, detail = row
    return TimelineEntry(
        alert_id=alert_id, at=_instant(at), actor=actor, action=action, detail=str(detail)
    )


def token_from_row(row: Sequence[Any]) -> AcceptToken:
    token_hash, alert_id, responder_id, created_at, expires_at, used_at, action = row
    return AcceptToken(
        token_hash=token_hash,
        alert_id=alert_id,
        responder_id=responder_id,
        created_at=_instant(created_at),
        expires_at=_instant(expires_at),
        used_at=as_instant(used_at),
        action=action,
    )


def token_status(token: AcceptToken | None, now: datetime) -> TokenStatus:
    """USED wins over EXPIRED: "someone already answered this" is the more useful answer."""
    if token is None:
        return TokenStatus.UNKNOWN
    if token.used_at is not None:
        return TokenStatus.USED
    if token.expires_at <= now:
        return TokenStatus.EXPIRED
    return TokenStatus.OK


def repeat_entry(new: NewAlert, alert_id: str) -> TimelineEntry:
    return TimelineEntry(alert_id, new.opened_at, new.actor, REPEAT, new.detail)


def opened_entry(new: NewAlert) -> TimelineEntry:
    return TimelineEntry(new.id, new.opened_at, new.actor, OPENED, new.detail)


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")


def check_lease(lease: float) -> None:
    if not lease > 0:
        raise ValueError(f"lease must be > 0 seconds, got {lease}")


def transition_changes(
    to_state: AlertState,
    entry: TimelineEntry,
    acked_by: str | None,
    outcome: Outcome | None,
    note: str | None,
    assignee: str | None = None,
) -> list[tuple[str, Any]]:
    """The ``SET`` assignments (``?`` placeholders) and values of a state change.

    Every change clears the claim: a step claimed before the change must not finish as if
    nothing happened (finish_step also checks the state, this makes it obvious in the row).
    """
    at = entry.at
    changes: list[tuple[str, Any]] = [
        ("state = ?", str(to_state)),
        ("updated_at = ?", at),
        ("claim = ?", None),
    ]
    if to_state == AlertState.ACKNOWLEDGED:
        # Without an explicit responder the actor acked (a duty-desk user, "user:alice").
        # The first acknowledgement is kept (an assignment later changes only the assignee).
        who = acked_by if acked_by is not None else entry.actor
        changes += [
            ("acked_at = COALESCE(acked_at, ?)", at),
            ("acked_by = COALESCE(acked_by, ?)", who),
            ("assignee = ?", assignee if assignee is not None else who),
            ("next_due_at = ?", None),
        ]
    elif to_state in (AlertState.RESOLVED, AlertState.CANCELLED):
        changes += [
            ("resolved_at = ?", at),
            ("resolved_by = ?", entry.actor),
            ("outcome = ?", None if outcome is None else str(outcome)),
            # A close without a note keeps the one written before (a note is never lost).
            ("note = COALESCE(?, note)", note_text(note)),
            ("next_due_at = ?", None),
        ]
    elif to_state == AlertState.OPEN:
        # Back to triggered (an ack that timed out): it is no longer anyone's, so it leaves
        # responder_load and time-to-ack statistics; the next step is due at once.
        changes += [
            ("acked_at = ?", None),
            ("acked_by = ?", None),
            ("assignee = ?", None),
            ("resolved_at = ?", None),
            ("resolved_by = ?", None),
            ("outcome = ?", None),
            ("next_due_at = ?", at),
        ]
    return changes


def new_alert_values(new: NewAlert) -> dict[str, Any]:
    """Column → value of a freshly opened alert (instants still datetimes)."""
    return {
        "id": new.id,
        "kind": new.kind,
        "priority": str(new.priority),
        "state": str(AlertState.OPEN),
        "device_id": new.device_id,
        "resident_id": new.resident_id,
        "active_key": active_key(new.device_id, new.resident_id, new.kind),
        "count": 1,
        "steps": steps_json(new.steps),
        "step_index": new.first_step,
        "next_due_at": new.first_due_at,
        "source": new.source,
        "source_seq": new.source_seq,
        "detail": detail_json(new.detail),
        "opened_at": new.opened_at,
        "updated_at": new.opened_at,
    }


# -- SQL both backends run (``?`` placeholders; PostgreSQL's side applies qmark_to_pyformat) --
def marks(n: int) -> str:
    return ", ".join("?" * n)


GET_ALERT_SQL: Final = f"SELECT {ALERT_SELECT} FROM alerts WHERE id = ?"

# The trigger goes in first: a concurrent transaction applying the same trigger waits on it
# (PostgreSQL) and then sees it taken, so a redelivered event is applied exactly once.
CLAIM_TRIGGER_SQL: Final = (
    "INSERT INTO alert_triggers (trigger_key, alert_id) VALUES (?, ?)"
    " ON CONFLICT (trigger_key) DO NOTHING"
)
TRIGGER_ALERT_SQL: Final = "SELECT alert_id FROM alert_triggers WHERE trigger_key = ?"
SET_TRIGGER_SQL: Final = "UPDATE alert_triggers SET alert_id = ? WHERE trigger_key = ?"

# updated_at never moves backwards: a repeat delivered late must not make the alert look
# staler than its last real change (CASE rather than max()/GREATEST: one text, two engines).
JOIN_SQL: Final = (
    "UPDATE alerts SET count = count + 1,"
    " updated_at = CASE WHEN updated_at < ? THEN ? ELSE updated_at END"
    f" WHERE active_key = ? AND {ACTIVE_PREDICATE} RETURNING {ALERT_SELECT}"
)

_NEW_COLUMNS: Final = (
    "id",
    "kind",
    "priority",
    "state",
    "device_id",
    "resident_id",
    "active_key",
    "count",
    "steps",
    "step_index",
    "next_due_at",
    "source",
    "source_seq",
    "detail",
    "opened_at",
    "updated_at",
)
# ON CONFLICT names the partial unique index by its predicate: losing the race to a
# concurrent opener yields no row (and no error that would abort the transaction); the
# caller then joins the winner's alert.
INSERT_ALERT_SQL: Final = (
    f"INSERT INTO alerts ({', '.join(_NEW_COLUMNS)}) VALUES ({marks(len(_NEW_COLUMNS))})"
    f" ON CONFLICT (active_key) WHERE {ACTIVE_PREDICATE} DO NOTHING RETURNING {ALERT_SELECT}"
)

# Adoption of an unregistered device: its active alerts learn the resident it was given.
SET_RESIDENT_SQL: Final = (
    "UPDATE alerts SET resident_id = ?, updated_at = ?"
    " WHERE device_id = ? AND resident_id IS NULL AND state IN ('open', 'acknowledged')"
    " RETURNING id"
)

INSERT_TIMELINE_SQL: Final = (
    "INSERT INTO alert_timeline (alert_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)"
)
TIMELINE_SQL: Final = (
    f"SELECT {TIMELINE_SELECT} FROM alert_timeline WHERE alert_id = ? ORDER BY at, id"
)

FINISH_STEP_SQL: Final = (
    "UPDATE alerts SET step_index = ?, next_due_at = ?, claim = NULL"
    " WHERE id = ? AND claim = ? AND state = 'open'"
)
ESCALATE_SQL: Final = (
    "UPDATE alerts SET next_due_at = ?, claim = NULL,"
    " updated_at = CASE WHEN updated_at < ? THEN ? ELSE updated_at END"
    " WHERE id = ? AND state = 'open'"
)
NEXT_DUE_SQL: Final = "SELECT min(next_due_at) FROM alerts WHERE state = 'open'"
DUE_ORDER: Final = "priority, next_due_at, id"

INSERT_TOKEN_SQL: Final = (
    f"INSERT INTO accept_tokens ({TOKEN_SELECT}) VALUES ({marks(len(TOKEN_COLUMNS))})"
)
GET_TOKEN_SQL: Final = f"SELECT {TOKEN_SELECT} FROM accept_tokens WHERE token_hash = ?"
# One conditional UPDATE: of two concurrent taps exactly one matches "used_at IS NULL".
USE_TOKEN_SQL: Final = (
    "UPDATE accept_tokens SET used_at = ?, action = ?"
    " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?"
    f" RETURNING {TOKEN_SELECT}"
)

# Ids per IN (…) list: well under SQLite's variable limit, and short statements for both.
CHUNK: Final = 500


def transition_sql(changes: Sequence[tuple[str, Any]], n_from: int) -> str:
    sets = ", ".join(c for c, _ in changes)
    return (
        f"UPDATE alerts SET {sets} WHERE id = ? AND state IN ({marks(n_from)})"
        f" RETURNING {ALERT_SELECT}"
    )


def active_query(device_id: str | None, resident_id: str | None) -> tuple[str, list[Any]]:
    """Active alerts of a device and/or resident (either matches); neither: all active."""
    who: list[str] = []
    params: list[Any] = []
    if device_id is not None:
        who.append("device_id = ?")
        params.append(device_id)
    if resident_id is not None:
        who.append("resident_id = ?")
        params.append(resident_id)
    where = ACTIVE_PREDICATE + (f" AND ({' OR '.join(who)})" if who else "")
    sql = f"SELECT {ALERT_SELECT} FROM alerts WHERE {where} ORDER BY opened_at DESC, id DESC"
    return sql, params


def list_query(
    states: Sequence[AlertState],
    priorities: Sequence[Priority],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[str, list[Any]]:
    """``since`` inclusive, ``until`` exclusive, so consecutive windows never overlap."""
    check_page(limit, offset)
    where: list[str] = []
    params: list[Any] = []
    if states:
        wanted = list(dict.fromkeys(str(s) for s in states))
        where.append(f"state IN ({marks(len(wanted))})")
        params += wanted
    if priorities:
        wanted = list(dict.fromkeys(str(p) for p in priorities))
        where.append(f"priority IN ({marks(len(wanted))})")
        params += wanted
    if since is not None:
        where.append("opened_at >= ?")
        params.append(since)
    if until is not None:
        where.append("opened_at < ?")
        params.append(until)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    # 'P1' < 'P2' < 'P3' as text: priority order is plain column order.
    sql = (
        f"SELECT {ALERT_SELECT} FROM alerts{clause}"
        " ORDER BY priority, opened_at, id LIMIT ? OFFSET ?"
    )
    return sql, [*params, limit, offset]


def load_sql(n: int) -> str:
    return (
        "SELECT assignee, count(*) FROM alerts"
        f" WHERE state = 'acknowledged' AND assignee IN ({marks(n)}) GROUP BY assignee"
    )


def timeline_row(e: TimelineEntry, alert_id: str | None = None) -> tuple[Any, ...]:
    """``alert_id``: the alert the entry is written for, when the method names it (it wins
    over ``e.alert_id``, so an entry can never land on another alert's timeline)."""
    return (alert_id or e.alert_id, e.at, e.actor, e.action, detail_json(e.detail))


def token_row(t: AcceptToken) -> tuple[Any, ...]:
    return (
        t.token_hash,
        t.alert_id,
        t.responder_id,
        t.created_at,
        t.expires_at,
        t.used_at,
        t.action,
    )


def new_alert_row(new: NewAlert) -> tuple[Any, ...]:
    values = new_alert_values(new)
    return tuple(values[c] for c in _NEW_COLUMNS)


class AlertReads:
    """The alert queries both backends share; each runs SQL through its own ``_alerts``."""

    async def _alerts(self, sql: str, params: Sequence[Any]) -> list[Alert]:
        raise NotImplementedError

    async def active_alerts(
        self, *, device_id: str | None = None, resident_id: str | None = None
    ) -> list[Alert]:
        return await self._alerts(*active_query(device_id, resident_id))

    async def list_alerts(
        self,
        *,
        states: Sequence[AlertState] = (),
        priorities: Sequence[Priority] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        return await self._alerts(*list_query(states, priorities, since, until, limit, offset))
