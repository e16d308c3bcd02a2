"""The alert store (:class:`alerts.store.AlertStore`) on PostgreSQL, mixed into
``PostgresStore``.

Several gateway instances share one database, so every guarantee is made by the database:

* one active alert per device (or resident) and kind: a partial unique index, with
  ``INSERT … ON CONFLICT DO NOTHING`` so the loser of a race joins the winner's alert;
* a trigger applied once: its key is inserted first, so a concurrent redelivery waits on it;
* a due step claimed by one instance: ``FOR UPDATE SKIP LOCKED``, re-checked against the
  latest row version (READ COMMITTED), so a step committed by another claimer is not due;
* state changes, step completions and link uses are conditional single-row UPDATEs.

Connections are autocommit: single statements are atomic on their own, and multi-statement
writes run in an explicit transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import errors
from psycopg.rows import TupleRow

from alerts import models
from alerts.models import (
    AcceptToken,
    Alert,
    AlertState,
    DueStep,
    Incident,
    NewAlert,
    OpenResult,
    Outcome,
    TimelineEntry,
    TokenStatus,
    responder_key,
)
from gateway.storage import _alerts as a
from gateway.storage import _incidents as inc
from gateway.storage._util import qmark_to_pyformat as pg
from gateway.storage._util import require_aware
from gateway.storage.base import StoreError

Conn = psycopg.AsyncConnection[TupleRow]

_GET_ALERT: Final = pg(a.GET_ALERT_SQL)
_CLAIM_TRIGGER: Final = pg(a.CLAIM_TRIGGER_SQL)
_TRIGGER_ALERT: Final = pg(a.TRIGGER_ALERT_SQL)
_SET_TRIGGER: Final = pg(a.SET_TRIGGER_SQL)
_JOIN: Final = pg(a.JOIN_SQL)
_INSERT_ALERT: Final = pg(a.INSERT_ALERT_SQL)
_INSERT_TIMELINE: Final = pg(a.INSERT_TIMELINE_SQL)
_TIMELINE: Final = pg(a.TIMELINE_SQL)
_FINISH_STEP: Final = pg(a.FINISH_STEP_SQL)
_ESCALATE: Final = pg(a.ESCALATE_SQL)
_GET_TOKEN: Final = pg(a.GET_TOKEN_SQL)
_USE_TOKEN: Final = pg(a.USE_TOKEN_SQL)

# SKIP LOCKED: rows another instance is claiming right now are passed over, not waited for.
# A row another instance claimed and committed after our snapshot is re-checked on its
# latest version when we lock it; its next_due_at then lies in the future and it drops out.
# The claim is a fresh random token per row (hex, like the SQLite backend's uuid4().hex).
_CLAIM_DUE: Final = f"""
WITH due AS (
  SELECT id, next_due_at AS due FROM alerts
  WHERE state = 'open' AND next_due_at <= %s
  ORDER BY {a.DUE_ORDER}
  LIMIT %s
  FOR UPDATE SKIP LOCKED)
UPDATE alerts AS al
SET claim = replace(gen_random_uuid()::text, '-', ''), next_due_at = %s
FROM due WHERE al.id = due.id
RETURNING {", ".join(f"al.{c}" for c in a.ALERT_COLUMNS)}, due.due
"""

_LOAD: Final = (
    "SELECT assignee, count(*) FROM alerts"
    " WHERE state = 'acknowledged' AND assignee = ANY(%s) GROUP BY assignee"
)


def _p(value: Any) -> Any:
    return require_aware(value) if isinstance(value, datetime) else value


def _ps(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_p(v) for v in values)


class PostgresAlerts(a.AlertReads):
    """AlertStore methods; the host class provides the connection pool."""

    if TYPE_CHECKING:

        def _connection(self) -> AbstractAsyncContextManager[Conn]: ...

    # -- opening and reading -----------------------------------------------------------------
    async def open_or_join(self, new: NewAlert) -> OpenResult:
        row = _ps(a.new_alert_row(new))
        key = a.active_key(new.device_id, new.resident_id, new.kind)
        at = require_aware(new.opened_at)
        trigger = new.trigger_key
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            points_to = new.id  # where the trigger row points (rewritten only if wrong)
            if trigger is not None:
                await cur.execute(_CLAIM_TRIGGER, (trigger, new.id))
                if cur.rowcount == 0:
                    await cur.execute(_TRIGGER_ALERT, (trigger,))
                    # Always a row: ON CONFLICT found it, and nobody deletes triggers of
                    # live alerts (retention prunes old ones only).
                    (points_to,) = await _one(cur)
                    await cur.execute(_GET_ALERT, (points_to,))
                    seen = await cur.fetchone()
                    if seen is not None:
                        return OpenResult(a.alert_from_row(seen), opened=False, applied=False)
                    # Its alert was pruned by retention: apply the trigger afresh.
            for _ in range(a.OPEN_ATTEMPTS):
                await cur.execute(_JOIN, (at, at, key))
                joined = await cur.fetchone()
                if joined is not None:
                    alert = a.alert_from_row(joined)
                    repeat = a.timeline_row(a.repeat_entry(new, alert.id))
                    await cur.execute(_INSERT_TIMELINE, repeat)
                    if trigger is not None and points_to != alert.id:
                        await cur.execute(_SET_TRIGGER, (alert.id, trigger))
                    return OpenResult(alert, opened=False, applied=True)
                # Loses a race with a concurrent opener quietly (no row, no aborted
                # transaction); the next round's UPDATE then sees the winner and joins it.
                await cur.execute(_INSERT_ALERT, row)
                inserted = await cur.fetchone()
                if inserted is not None:
                    await cur.execute(_INSERT_TIMELINE, a.timeline_row(a.opened_entry(new)))
                    if trigger is not None and points_to != new.id:
                        await cur.execute(_SET_TRIGGER, (new.id, trigger))
                    return OpenResult(a.alert_from_row(inserted), opened=True, applied=True)
            # Inside the transaction: the trigger claimed above is rolled back with it.
            raise StoreError(f"open_or_join {key!r}: no settled outcome after retries")

    async def get_alert(self, alert_id: str) -> Alert | None:
        async with self._connection() as conn:
            cur = await conn.execute(_GET_ALERT, (alert_id,))
            row = await cur.fetchone()
        return None if row is None else a.alert_from_row(row)

    async def _alerts(self, sql: str, params: Sequence[Any]) -> list[Alert]:
        async with self._connection() as conn:
            cur = await conn.execute(pg(sql), _ps(params))
            rows = await cur.fetchall()
        return [a.alert_from_row(r) for r in rows]

    # -- timeline ----------------------------------------------------------------------------
    async def timeline(self, alert_id: str) -> list[TimelineEntry]:
        async with self._connection() as conn:
            cur = await conn.execute(_TIMELINE, (alert_id,))
            rows = await cur.fetchall()
        return [a.timeline_from_row(r) for r in rows]

    async def add_timeline(self, entries: Sequence[TimelineEntry]) -> None:
        if not entries:
            return
        rows = [_ps(a.timeline_row(e)) for e in entries]
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT_TIMELINE, rows)

    async def link_resident(
        self, device_id: str, resident_id: str, at: datetime, actor: str
    ) -> list[str]:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(pg(a.SET_RESIDENT_SQL), _ps([resident_id, at, device_id]))
            ids = [str(r[0]) for r in await cur.fetchall()]
            detail = models.detail_json(resident_id=resident_id)
            entries = [TimelineEntry(i, at, actor, "device_registered", detail) for i in ids]
            if entries:
                await cur.executemany(_INSERT_TIMELINE, [_ps(a.timeline_row(e)) for e in entries])
        return ids

    # -- state changes -----------------------------------------------------------------------
    async def transition(
        self,
        alert_id: str,
        *,
        from_states: Sequence[AlertState],
        to_state: AlertState,
        entry: TimelineEntry,
        acked_by: str | None = None,
        outcome: Outcome | None = None,
        note: str | None = None,
        assignee: str | None = None,
    ) -> Alert | None:
        if not from_states:
            return None
        changes = a.transition_changes(to_state, entry, acked_by, outcome, note, assignee)
        sql = pg(a.transition_sql(changes, len(from_states)))
        params = _ps([*(v for _, v in changes), alert_id, *(str(s) for s in from_states)])
        timeline = _ps(a.timeline_row(entry, alert_id))
        try:
            async with self._connection() as conn, conn.transaction():
                cur = await conn.execute(sql, params)
                row = await cur.fetchone()
                if row is None:
                    return None
                await conn.execute(_INSERT_TIMELINE, timeline)
                return a.alert_from_row(row)
        except errors.UniqueViolation:
            # Re-activating a closed alert while another active one holds its key: the
            # change cannot apply, exactly like a state mismatch (the transaction rolled back).
            return None

    async def _relaxed(self, sql: str | bytes, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement in its own transaction that does not wait for the WAL flush, sent as
        one pipeline (a single round trip). For the dispatcher's bookkeeping on the way to a
        first notification — a step's claim, accept tokens — which only an operating-system
        crash within ~200 ms could undo, and harmlessly (the step is claimed again, a link
        goes stale). Events and alerts themselves keep full durability."""
        async with self._connection() as conn:
            async with conn.pipeline():
                await conn.execute("BEGIN")
                await conn.execute("SET LOCAL synchronous_commit = off")
                cur = await conn.execute(sql, params)
                await conn.execute("COMMIT")
            return await cur.fetchall() if cur.description else []

    # -- escalation timers -------------------------------------------------------------------
    async def claim_due(self, now: datetime, *, lease: float, limit: int = 20) -> list[DueStep]:
        a.check_lease(lease)
        if limit <= 0:
            return []
        until = require_aware(now) + timedelta(seconds=lease)
        rows = await self._relaxed(_CLAIM_DUE, (now, limit, until))
        # RETURNING has no order: restore "P1 first, then oldest due" from the old due time.
        rows.sort(key=lambda r: (r[2], r[-1], r[0]))
        steps = []
        for r in rows:
            alert = a.alert_from_row(r[:-1])
            assert alert.claim is not None  # set by the UPDATE just now
            steps.append(DueStep(alert, alert.claim))
        return steps

    async def finish_step(
        self, alert_id: str, claim: str, *, next_step_index: int, next_due_at: datetime | None
    ) -> bool:
        async with self._connection() as conn:
            cur = await conn.execute(
                _FINISH_STEP, _ps((next_step_index, next_due_at, alert_id, claim))
            )
            return cur.rowcount == 1

    async def escalate_now(self, alert_id: str, entry: TimelineEntry) -> bool:
        at = require_aware(entry.at)
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(_ESCALATE, (at, at, at, alert_id))
            if cur.rowcount != 1:
                return False
            await conn.execute(_INSERT_TIMELINE, _ps(a.timeline_row(entry, alert_id)))
        return True

    async def next_due_time(self) -> datetime | None:
        async with self._connection() as conn:
            cur = await conn.execute(a.NEXT_DUE_SQL)
            (value,) = await _one(cur)
        return a.as_instant(value)

    # -- accept links ------------------------------------------------------------------------
    async def create_tokens(self, tokens: Sequence[AcceptToken]) -> None:
        if not tokens:
            return
        # One multi-row INSERT, relaxed: on the way to the first notification.
        width = len(a.TOKEN_COLUMNS)
        values = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(tokens))
        sql = f"INSERT INTO accept_tokens ({a.TOKEN_SELECT}) VALUES {values}"
        await self._relaxed(sql.encode(), [v for t in tokens for v in _ps(a.token_row(t))])

    async def peek_token(
        self, token_hash: str, now: datetime
    ) -> tuple[TokenStatus, AcceptToken | None]:
        require_aware(now)
        async with self._connection() as conn:
            cur = await conn.execute(_GET_TOKEN, (token_hash,))
            row = await cur.fetchone()
        token = None if row is None else a.token_from_row(row)
        return a.token_status(token, now), token

    async def use_token(
        self, token_hash: str, now: datetime, action: str
    ) -> tuple[TokenStatus, AcceptToken | None]:
        require_aware(now)
        async with self._connection() as conn:
            cur = await conn.execute(_USE_TOKEN, (now, action, token_hash, now))
            row = await cur.fetchone()
            if row is not None:
                return TokenStatus.OK, a.token_from_row(row)
            # Not ours to use: read it only to say why (unknown, used or expired).
            cur = await conn.execute(_GET_TOKEN, (token_hash,))
            row = await cur.fetchone()
        token = None if row is None else a.token_from_row(row)
        return a.token_status(token, now), token

    # -- incidents ---------------------------------------------------------------------------
    async def join_incident(
        self, proposal: Incident, alert_ids: Sequence[str], *, hold: Sequence[str] = ()
    ) -> tuple[Incident, list[str]]:
        ids = list(dict.fromkeys(alert_ids))
        held = [i for i in ids if i in set(hold)]
        rest = [i for i in ids if i not in set(hold)]
        async with self._connection() as conn, conn.transaction():
            await conn.execute(pg(inc.INSERT_INCIDENT_SQL), _ps(inc.incident_row(proposal)))
            cur = await conn.execute(pg(inc.OPEN_INCIDENT_SQL), (proposal.kind, proposal.place))
            incident = inc.incident_from_row(await _one(cur))
            joined: list[str] = []
            for group, hold_them in ((held, True), (rest, False)):
                if group:
                    sql = pg(inc.member_sql(len(group), hold_them))
                    cur = await conn.execute(sql, (incident.id, *group))
                    joined += [str(r[0]) for r in await cur.fetchall()]
            await conn.execute(
                pg(inc.TOUCH_INCIDENT_SQL), (require_aware(proposal.updated_at), incident.id)
            )
        return incident, joined

    async def get_incident(self, incident_id: str) -> Incident | None:
        async with self._connection() as conn:
            cur = await conn.execute(pg(inc.GET_INCIDENT_SQL), (incident_id,))
            row = await cur.fetchone()
        return None if row is None else inc.incident_from_row(row)

    async def list_incidents(self, *, open_only: bool = True, limit: int = 100) -> list[Incident]:
        states = ("open",) if open_only else ("open", "closed")
        sql = pg(inc.LIST_INCIDENTS_SQL.format(states=a.marks(len(states))))
        async with self._connection() as conn:
            cur = await conn.execute(sql, (*states, limit))
            rows = await cur.fetchall()
        return [inc.incident_from_row(r) for r in rows]

    async def incident_alerts(self, incident_id: str) -> list[Alert]:
        return await self._alerts(
            f"SELECT {a.ALERT_SELECT} FROM alerts WHERE incident_id = ? ORDER BY opened_at, id",
            [incident_id],
        )

    async def close_incident(self, incident_id: str, at: datetime, by: str) -> Incident | None:
        when = require_aware(at)
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(pg(inc.CLOSE_INCIDENT_SQL), (when, by, when, incident_id))
            row = await cur.fetchone()
        return None if row is None else inc.incident_from_row(row)

    async def responder_load(self, responder_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(responder_ids))
        load = dict.fromkeys(wanted, 0)
        if not wanted:
            return load
        async with self._connection() as conn:
            cur = await conn.execute(_LOAD, ([responder_key(r) for r in wanted],))
            for who, n in await cur.fetchall():
                load[str(who).removeprefix("responder:")] = int(n)
        return load


async def _one(cur: psycopg.AsyncCursor[TupleRow]) -> TupleRow:
    row = await cur.fetchone()
    if row is None:
        raise StoreError("expected one row, got none")  # a statement that always returns one
    return row
