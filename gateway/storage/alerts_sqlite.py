"""The alert store (:class:`alerts.store.AlertStore`) on SQLite, mixed into ``SqliteStore``.

Every method runs on the store's one worker thread; writes are one ``BEGIN IMMEDIATE``
transaction each, which takes the file's write lock up front. That lock is what serialises
two processes (or two ``SqliteStore`` objects) on the same file: a read-then-write here can
never interleave with another writer, so claims and joins need no further locking.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

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
from gateway.storage._util import utc_text
from gateway.storage.base import StoreError

T = TypeVar("T")

_CLAIM_DUE_IDS_SQL: Final = (
    "SELECT id FROM alerts WHERE state = 'open' AND next_due_at <= ?"
    f" ORDER BY {a.DUE_ORDER} LIMIT ?"
)


def _p(value: Any) -> Any:
    """A parameter as SQLite stores it: instants as fixed UTC text (naive ones refused)."""
    return utc_text(value) if isinstance(value, datetime) else value


def _ps(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_p(v) for v in values)


def _is_unique_violation(exc: sqlite3.IntegrityError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CONSTRAINT_UNIQUE


class SqliteAlerts(a.AlertReads):
    """AlertStore methods; the host class provides the worker thread and transactions."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        @staticmethod
        def _tx(conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Cursor]: ...

    # -- opening and reading -----------------------------------------------------------------
    async def open_or_join(self, new: NewAlert) -> OpenResult:
        row = _ps(a.new_alert_row(new))
        key = a.active_key(new.device_id, new.resident_id, new.kind)
        at = _p(new.opened_at)
        opened = _ps(a.timeline_row(a.opened_entry(new)))
        trigger = new.trigger_key

        def write(conn: sqlite3.Connection) -> OpenResult:
            with self._tx(conn) as cur:
                points_to = new.id  # where the trigger row points (rewritten only if wrong)
                if trigger is not None:
                    cur.execute(a.CLAIM_TRIGGER_SQL, (trigger, new.id))
                    if cur.rowcount == 0:
                        (points_to,) = cur.execute(a.TRIGGER_ALERT_SQL, (trigger,)).fetchone()
                        seen = cur.execute(a.GET_ALERT_SQL, (points_to,)).fetchone()
                        if seen is not None:
                            return OpenResult(a.alert_from_row(seen), opened=False, applied=False)
                        # Its alert was pruned by retention: apply the trigger afresh.
                for _ in range(a.OPEN_ATTEMPTS):
                    joined = cur.execute(a.JOIN_SQL, (at, at, key)).fetchone()
                    if joined is not None:
                        alert = a.alert_from_row(joined)
                        repeat = a.timeline_row(a.repeat_entry(new, alert.id))
                        cur.execute(a.INSERT_TIMELINE_SQL, _ps(repeat))
                        if trigger is not None and points_to != alert.id:
                            cur.execute(a.SET_TRIGGER_SQL, (alert.id, trigger))
                        return OpenResult(alert, opened=False, applied=True)
                    inserted = cur.execute(a.INSERT_ALERT_SQL, row).fetchone()
                    if inserted is not None:
                        cur.execute(a.INSERT_TIMELINE_SQL, opened)
                        if trigger is not None and points_to != new.id:
                            cur.execute(a.SET_TRIGGER_SQL, (new.id, trigger))
                        return OpenResult(a.alert_from_row(inserted), opened=True, applied=True)
                # Inside the transaction: the trigger claimed above is rolled back with it.
                raise StoreError(f"open_or_join {key!r}: no settled outcome after retries")

        return await self._run(write)

    async def get_alert(self, alert_id: str) -> Alert | None:
        def read(conn: sqlite3.Connection) -> Alert | None:
            row = conn.execute(a.GET_ALERT_SQL, (alert_id,)).fetchone()
            return None if row is None else a.alert_from_row(row)

        return await self._run(read)

    async def _alerts(self, sql: str, params: Sequence[Any]) -> list[Alert]:
        args = _ps(params)

        def read(conn: sqlite3.Connection) -> list[Alert]:
            return [a.alert_from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._run(read)

    # -- timeline ----------------------------------------------------------------------------
    async def timeline(self, alert_id: str) -> list[TimelineEntry]:
        def read(conn: sqlite3.Connection) -> list[TimelineEntry]:
            rows = conn.execute(a.TIMELINE_SQL, (alert_id,)).fetchall()
            return [a.timeline_from_row(r) for r in rows]

        return await self._run(read)

    async def add_timeline(self, entries: Sequence[TimelineEntry]) -> None:
        if not entries:
            return
        rows = [_ps(a.timeline_row(e)) for e in entries]

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(a.INSERT_TIMELINE_SQL, rows)

        await self._run(write)

    async def link_resident(
        self, device_id: str, resident_id: str, at: datetime, actor: str
    ) -> list[str]:
        def write(conn: sqlite3.Connection) -> list[str]:
            with self._tx(conn) as cur:
                params = _ps([resident_id, at, device_id])
                ids = [str(r[0]) for r in cur.execute(a.SET_RESIDENT_SQL, params).fetchall()]
                cur.executemany(
                    a.INSERT_TIMELINE_SQL,
                    [_ps(a.timeline_row(e)) for e in _linked(ids, resident_id, at, actor)],
                )
            return ids

        return await self._run(write)

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
        sql = a.transition_sql(changes, len(from_states))
        params = _ps([*(v for _, v in changes), alert_id, *(str(s) for s in from_states)])
        timeline = _ps(a.timeline_row(entry, alert_id))

        def write(conn: sqlite3.Connection) -> Alert | None:
            try:
                with self._tx(conn) as cur:
                    row = cur.execute(sql, params).fetchone()
                    if row is None:
                        return None
                    cur.execute(a.INSERT_TIMELINE_SQL, timeline)
                    return a.alert_from_row(row)
            except sqlite3.IntegrityError as exc:
                # Re-activating a closed alert while another active one holds its key: the
                # change cannot apply, exactly like a state mismatch.
                if _is_unique_violation(exc):
                    return None
                raise

        return await self._run(write)

    # -- escalation timers -------------------------------------------------------------------
    async def claim_due(self, now: datetime, *, lease: float, limit: int = 20) -> list[DueStep]:
        a.check_lease(lease)
        if limit <= 0:
            return []
        now_t = _p(now)
        until = _p(now + timedelta(seconds=lease))

        def write(conn: sqlite3.Connection) -> list[DueStep]:
            with self._tx(conn) as cur:
                ids = [i for (i,) in cur.execute(_CLAIM_DUE_IDS_SQL, (now_t, limit)).fetchall()]
                if not ids:
                    return []
                claims = {i: uuid.uuid4().hex for i in ids}
                # One UPDATE for the batch; CASE hands each row its own token. The write lock
                # (BEGIN IMMEDIATE) keeps the ids selected above due until we commit.
                case = " ".join("WHEN ? THEN ?" for _ in ids)
                sql = (
                    f"UPDATE alerts SET claim = CASE id {case} END, next_due_at = ?"
                    f" WHERE id IN ({a.marks(len(ids))}) RETURNING {a.ALERT_SELECT}"
                )
                pairs = [v for i in ids for v in (i, claims[i])]
                rows = cur.execute(sql, (*pairs, until, *ids)).fetchall()
            by_id = {r[0]: a.alert_from_row(r) for r in rows}
            return [DueStep(by_id[i], claims[i]) for i in ids]  # in due order

        return await self._run(write)

    async def finish_step(
        self, alert_id: str, claim: str, *, next_step_index: int, next_due_at: datetime | None
    ) -> bool:
        params = _ps((next_step_index, next_due_at, alert_id, claim))

        def write(conn: sqlite3.Connection) -> bool:
            with self._tx(conn) as cur:
                cur.execute(a.FINISH_STEP_SQL, params)
                return cur.rowcount == 1

        return await self._run(write)

    async def escalate_now(self, alert_id: str, entry: TimelineEntry) -> bool:
        at = _p(entry.at)
        timeline = _ps(a.timeline_row(entry, alert_id))

        def write(conn: sqlite3.Connection) -> bool:
            with self._tx(conn) as cur:
                cur.execute(a.ESCALATE_SQL, (at, at, at, alert_id))
                if cur.rowcount != 1:
                    return False
                cur.execute(a.INSERT_TIMELINE_SQL, timeline)
            return True

        return await self._run(write)

    async def next_due_time(self) -> datetime | None:
        def read(conn: sqlite3.Connection) -> datetime | None:
            (value,) = conn.execute(a.NEXT_DUE_SQL).fetchone()
            return a.as_instant(value)  # min() drops the declared type: text comes back

        return await self._run(read)

    # -- accept links ------------------------------------------------------------------------
    async def create_tokens(self, tokens: Sequence[AcceptToken]) -> None:
        if not tokens:
            return
        rows = [_ps(a.token_row(t)) for t in tokens]

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(a.INSERT_TOKEN_SQL, rows)

        await self._run(write)

    async def peek_token(
        self, token_hash: str, now: datetime
    ) -> tuple[TokenStatus, AcceptToken | None]:
        _p(now)  # refuse a naive instant here too, not only where it is stored

        def read(conn: sqlite3.Connection) -> AcceptToken | None:
            row = conn.execute(a.GET_TOKEN_SQL, (token_hash,)).fetchone()
            return None if row is None else a.token_from_row(row)

        token = await self._run(read)
        return a.token_status(token, now), token

    async def use_token(
        self, token_hash: str, now: datetime, action: str
    ) -> tuple[TokenStatus, AcceptToken | None]:
        now_t = _p(now)

        def write(conn: sqlite3.Connection) -> tuple[TokenStatus, AcceptToken | None]:
            with self._tx(conn) as cur:
                row = cur.execute(a.USE_TOKEN_SQL, (now_t, action, token_hash, now_t)).fetchone()
                if row is not None:
                    return TokenStatus.OK, a.token_from_row(row)
                row = cur.execute(a.GET_TOKEN_SQL, (token_hash,)).fetchone()
            token = None if row is None else a.token_from_row(row)
            return a.token_status(token, now), token

        return await self._run(write)

    # -- incidents ---------------------------------------------------------------------------
    async def join_incident(
        self, proposal: Incident, alert_ids: Sequence[str], *, hold: Sequence[str] = ()
    ) -> tuple[Incident, list[str]]:
        ids = list(dict.fromkeys(alert_ids))
        held = [i for i in ids if i in set(hold)]
        rest = [i for i in ids if i not in set(hold)]
        at = _p(proposal.updated_at)

        def write(conn: sqlite3.Connection) -> tuple[Incident, list[str]]:
            with self._tx(conn) as cur:
                cur.execute(inc.INSERT_INCIDENT_SQL, _ps(inc.incident_row(proposal)))
                row = cur.execute(inc.OPEN_INCIDENT_SQL, (proposal.kind, proposal.place)).fetchone()
                incident = inc.incident_from_row(row)
                joined: list[str] = []
                for group, hold_them in ((held, True), (rest, False)):
                    if group:
                        sql = inc.member_sql(len(group), hold_them)
                        joined += [r[0] for r in cur.execute(sql, (incident.id, *group))]
                cur.execute(inc.TOUCH_INCIDENT_SQL, (at, incident.id))
            return incident, joined

        return await self._run(write)

    async def get_incident(self, incident_id: str) -> Incident | None:
        def read(conn: sqlite3.Connection) -> Incident | None:
            row = conn.execute(inc.GET_INCIDENT_SQL, (incident_id,)).fetchone()
            return None if row is None else inc.incident_from_row(row)

        return await self._run(read)

    async def list_incidents(self, *, open_only: bool = True, limit: int = 100) -> list[Incident]:
        states = ("open",) if open_only else ("open", "closed")
        sql = inc.LIST_INCIDENTS_SQL.format(states=a.marks(len(states)))

        def read(conn: sqlite3.Connection) -> list[Incident]:
            return [inc.incident_from_row(r) for r in conn.execute(sql, (*states, limit))]

        return await self._run(read)

    async def incident_alerts(self, incident_id: str) -> list[Alert]:
        return await self._alerts(
            f"SELECT {a.ALERT_SELECT} FROM alerts WHERE incident_id = ? ORDER BY opened_at, id",
            [incident_id],
        )

    async def close_incident(self, incident_id: str, at: datetime, by: str) -> Incident | None:
        when = _p(at)

        def write(conn: sqlite3.Connection) -> Incident | None:
            with self._tx(conn) as cur:
                row = cur.execute(inc.CLOSE_INCIDENT_SQL, (when, by, when, incident_id)).fetchone()
            return None if row is None else inc.incident_from_row(row)

        return await self._run(write)

    async def responder_load(self, responder_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(responder_ids))

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            load = dict.fromkeys(wanted, 0)
            for i in range(0, len(wanted), a.CHUNK):
                chunk = wanted[i : i + a.CHUNK]
                keys = [responder_key(r) for r in chunk]
                for who, n in conn.execute(a.load_sql(len(chunk)), keys).fetchall():
                    load[str(who).removeprefix("responder:")] = int(n)
            return load

        return await self._run(read)


def _linked(ids: Sequence[str], resident_id: str, at: datetime, actor: str) -> list[TimelineEntry]:
    detail = models.detail_json(resident_id=resident_id)
    return [TimelineEntry(i, at, actor, "device_registered", detail) for i in ids]
