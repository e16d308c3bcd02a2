"""SQLite backend: the embedded default (``scgw demo``, small sites).

One connection, owned by one dedicated worker thread: sqlite3 connections must not be shared
across threads, and a single writer is what SQLite wants anyway. Every public coroutine hands
a plain function to that thread and awaits it, so the event loop never blocks on disk.

Durability: WAL with ``synchronous=FULL`` fsyncs the log on every commit, so a write that has
returned survives ``kill -9`` and power loss; each write method is one explicit transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from devices.models import DeviceHealth, Event, PendingSighting, Reading
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import UpsertResult
from gateway.storage import _registry as reg
from gateway.storage import schema_sqlite as schema
from gateway.storage._util import as_json_text, escaped, fold_pending, parse_utc_text, utc_text
from gateway.storage.alerts_sqlite import SqliteAlerts
from gateway.storage.audit_sqlite import SqliteAudit
from gateway.storage.base import (
    BatchResult,
    FloodFlag,
    PendingDevice,
    StoreError,
    StoreRefused,
)
from gateway.storage.reads import ReadQueries
from gateway.storage.users_sqlite import SqliteUsers
from gateway.storage.worker import PriorityWorker

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_S: Final = 10.0

# Primary result codes that mean "the database/disk is unavailable", not "the SQL is wrong".
# They become StoreError (caller retries, does not ack); everything else stays a bug.
_UNAVAILABLE: Final = frozenset(
    {
        5,  # SQLITE_BUSY: another process held the write lock past busy_timeout
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: e.g. the filesystem was remounted read-only after an I/O error
        10,  # SQLITE_IOERR
        11,  # SQLITE_CORRUPT
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        26,  # SQLITE_NOTADB
    }
)

# The same faults by message, for errors raised without a result code (the disk spool then
# takes over exactly as for a PostgreSQL outage).
_UNAVAILABLE_TEXT: Final = (
    "disk i/o error",
    "database or disk is full",
    "readonly database",
    "unable to open database",
    "database is locked",
)


def unavailable(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means the database or its disk is unavailable (not a bug)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _UNAVAILABLE
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _UNAVAILABLE_TEXT)


# Authorizer actions that a read-only query() may use; anything else is denied.
_READ_ACTIONS: Final = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)

# Converters are looked up by declared column type; registering is process-wide but only
# affects connections opened with PARSE_DECLTYPES on columns declared UTC_TEXT (ours).
sqlite3.register_converter(schema.TS, parse_utc_text)

_HEALTH_SQL: Final = """
INSERT INTO device_state (device_id, last_seen, battery, online, online_at, fw, rssi)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE SET
  last_seen = max(device_state.last_seen, excluded.last_seen),
  battery = CASE WHEN excluded.battery IS NOT NULL
                  AND excluded.last_seen >= device_state.last_seen
                 THEN excluded.battery ELSE device_state.battery END,
  fw = CASE WHEN excluded.fw IS NOT NULL AND excluded.last_seen >= device_state.last_seen
            THEN excluded.fw ELSE device_state.fw END,
  rssi = CASE WHEN excluded.rssi IS NOT NULL AND excluded.last_seen >= device_state.last_seen
              THEN excluded.rssi ELSE device_state.rssi END,
  online = CASE WHEN excluded.online IS NOT NULL
                 AND (device_state.online_at IS NULL
                      OR excluded.last_seen >= device_state.online_at)
                THEN excluded.online ELSE device_state.online END,
  online_at = CASE WHEN excluded.online IS NOT NULL
                    AND (device_state.online_at IS NULL
                         OR excluded.last_seen >= device_state.online_at)
                   THEN excluded.last_seen ELSE device_state.online_at END
"""

_PENDING_SQL: Final = """
INSERT INTO pending_devices
  (device_id, first_seen, last_seen, messages, sos_count, last_kind, last_payload)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE SET
  first_seen = min(pending_devices.first_seen, excluded.first_seen),
  last_seen = max(pending_devices.last_seen, excluded.last_seen),
  messages = pending_devices.messages + excluded.messages,
  sos_count = pending_devices.sos_count + excluded.sos_count,
  last_kind = CASE WHEN excluded.last_seen >= pending_devices.last_seen
                   THEN excluded.last_kind ELSE pending_devices.last_kind END,
  last_payload = CASE WHEN excluded.last_seen >= pending_devices.last_seen
                      THEN excluded.last_payload ELSE pending_devices.last_payload END
"""

_EVENT_KEY_SQL: Final = (
    "INSERT INTO event_keys (device_id, dedup_key, time) VALUES (?, ?, ?) "
    "ON CONFLICT (device_id, dedup_key) DO NOTHING"
)
_EVENT_SQL: Final = (
    "INSERT INTO events (time, device_id, type, event_id, seq, battery, source, payload,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_READING_SQL: Final = (
    "INSERT OR IGNORE INTO readings (time, device_id, metric, value) VALUES (?, ?, ?, ?)"
)

_CHUNK: Final = 500  # ids per IN (...) list, well under SQLite's variable limit


def _health_row(h: DeviceHealth) -> tuple[Any, ...]:
    seen = utc_text(h.last_seen)
    online = None if h.online is None else int(h.online)
    return (
        h.device_id,
        seen,
        h.battery,
        online,
        seen if online is not None else None,
        h.fw,
        h.rssi,
    )


def _qmark(_col: str) -> str:
    return "?"


def _param(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


# A flag that went quiet and came back starts a new episode (its "since" moves on).
_FLAGS_SQL = (
    "INSERT INTO device_flags (device_id, since, last_over, over_count) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (device_id) DO UPDATE SET since = excluded.since,"
    " last_over = max(device_flags.last_over, excluded.last_over),"
    " over_count = excluded.over_count"
)
_SET_ASIDE_SQL = "INSERT INTO set_aside (at, lane, source, reason, content) VALUES (?, ?, ?, ?, ?)"


class SqliteStore(SqliteAlerts, SqliteUsers, SqliteAudit, ReadQueries):
    """The :class:`~gateway.storage.base.Store` (and, via :class:`SqliteAlerts` and
    :class:`SqliteUsers`, the :class:`~alerts.store.AlertStore` and the
    :class:`~gateway.users.UserStore`) on a SQLite file."""

    backend = "sqlite"

    def __init__(self, path: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        """``busy_timeout``: seconds a write waits for another process's lock on the same
        file before raising ``StoreError``."""
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor: PriorityWorker | None = None
        self._conn: sqlite3.Connection | None = None  # touched only by the worker thread

    # -- plumbing ---------------------------------------------------------------------------
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        executor = self._executor
        if executor is None:
            raise StoreError(f"SQLite store {self.path!r} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, self._call, fn)
        except sqlite3.DataError as exc:  # a value SQLite cannot store (too big, …)
            raise StoreRefused(f"SQLite refused the content: {exc}") from exc
        except sqlite3.Error as exc:
            if unavailable(exc):
                raise StoreError(f"SQLite {self.path!r} unavailable: {exc}") from exc
            raise

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(f"SQLite store {self.path!r} is not open")
        return fn(conn)

    @staticmethod
    @contextmanager
    def _tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then never
        # fail half way with SQLITE_BUSY when another process writes the same file.
        cur = conn.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.commit()

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = PriorityWorker("scgw-sqlite")
        try:
            await self._run_connect()
            await self.migrate()
        except BaseException:
            await self.close()
            raise

    async def _run_connect(self) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connect)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot create the directory for {self.path!r}: {exc}") from exc

    def _connect(self) -> None:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit BEGINs; every transaction here is explicit.
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )
        try:
            mode = self._enable_wal(conn)
            if mode != "wal" and self.path != ":memory:":
                # Still durable (rollback journal + FULL sync), only slower and less concurrent.
                log.warning("SQLite %r refused WAL (journal_mode=%s)", self.path, mode)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            # 32 MiB page cache (default 2 MiB): the readings index stays in memory.
            conn.execute("PRAGMA cache_size=-32768")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch to WAL, retrying while another process holds the lock: SQLite answers a
        journal-mode change with an immediate "locked" (no busy wait) when another connection
        is changing it or migrating at the same moment."""
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        while True:
            try:
                (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                return str(mode)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)  # in the store's worker thread, never on the event loop
            delay = min(delay * 2, 0.2)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def migrate(self) -> int:
        return await self._run(self._migrate)

    def _migrate(self, conn: sqlite3.Connection) -> int:
        # BEGIN IMMEDIATE serialises two processes migrating the same file at once; the second
        # sees the first one's version and applies nothing.
        with self._tx(conn) as cur:
            cur.execute(schema.SCHEMA_VERSION_DDL)
            (current,) = cur.execute(
                "SELECT coalesce(max(version), 0) FROM schema_version"
            ).fetchone()
            for version, statements in schema.MIGRATIONS:
                if version <= current:
                    continue
                for stmt in statements:
                    cur.execute(stmt)
                cur.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, utc_text(datetime.now(UTC))),
                )
                current = version
        return int(current)

    # -- ingest -----------------------------------------------------------------------------
    async def store_event(self, event: Event) -> bool:
        key = event.dedup_key
        row = (
            utc_text(event.ts),
            event.device_id,
            str(event.type),
            event.event_id if event.event_id is not None else uuid.uuid4().hex,
            event.seq,
            event.battery,
            event.source,
            as_json_text(event.payload),
            utc_text(event.received_at),
        )

        def write(conn: sqlite3.Connection) -> bool:
            with self._tx(conn) as cur:
                if key is not None:
                    cur.execute(_EVENT_KEY_SQL, (event.device_id, key, row[0]))
                    if cur.rowcount == 0:
                        return False
                cur.execute(_EVENT_SQL, row)
            return True

        return await self._run(write)

    async def store_batch(
        self, readings: Sequence[Reading], health: Sequence[DeviceHealth]
    ) -> BatchResult:
        rows = [(utc_text(r.ts), r.device_id, r.metric, r.value) for r in readings]
        health_rows = [_health_row(h) for h in health]

        def write(conn: sqlite3.Connection) -> BatchResult:
            with self._tx(conn) as cur:
                new = 0
                if rows:
                    cur.executemany(_READING_SQL, rows)
                    new = cur.rowcount  # summed over executemany: rows actually inserted
                if health_rows:
                    cur.executemany(_HEALTH_SQL, health_rows)
            return BatchResult(readings_new=new, readings_duplicate=len(rows) - new)

        return await self._run(write)

    async def record_health(self, health: Sequence[DeviceHealth]) -> None:
        if not health:
            return
        rows = [_health_row(h) for h in health]

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(_HEALTH_SQL, rows)

        await self._run(write)

    async def record_pending(self, sightings: Sequence[PendingSighting]) -> None:
        if not sightings:
            return
        rows = [
            (
                f.device_id,
                utc_text(f.first_seen),
                utc_text(f.last_seen),
                f.messages,
                f.sos_count,
                f.last_kind,
                f.last_payload,
            )
            for f in fold_pending(sightings)
        ]

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(_PENDING_SQL, rows)

        await self._run(write)

    async def set_device_timeouts(self, seconds: Mapping[str, float]) -> None:
        rows = list(seconds.items())

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.execute("DELETE FROM device_timeouts")
                cur.executemany("INSERT INTO device_timeouts (type, seconds) VALUES (?, ?)", rows)

        await self._run(write)

    async def save_flags(self, flags: Sequence[FloodFlag]) -> None:
        rows = [
            (f.device_id, utc_text(f.since), utc_text(f.last_over), f.over_count) for f in flags
        ]

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(_FLAGS_SQL, rows)

        if rows:
            await self._run(write)

    async def flood_flags(self, since: datetime) -> dict[str, FloodFlag]:
        rows = await self.query(
            "SELECT device_id, since, last_over, over_count FROM device_flags WHERE last_over >= ?",
            (utc_text(since),),
        )
        return {str(r[0]): FloodFlag(str(r[0]), r[1], r[2], int(r[3])) for r in rows}

    async def set_aside(
        self, at: datetime, lane: str, source: str, reason: str, content: str
    ) -> None:
        row = (utc_text(at), lane, escaped(source), escaped(reason), escaped(content))

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.execute(_SET_ASIDE_SQL, row)

        await self._run(write)

    # -- registry ---------------------------------------------------------------------------
    async def registry_version(self) -> int:
        rows = await self.query("SELECT version FROM registry_version WHERE id = 1")
        return int(rows[0][0])

    async def known_device_ids(self) -> set[str]:
        rows = await self.query("SELECT device_id FROM devices")
        return {r[0] for r in rows}

    async def device_exists(self, device_id: str) -> bool:
        rows = await self.query("SELECT 1 FROM devices WHERE device_id = ?", (device_id,))
        return bool(rows)

    async def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        key = reg.REGISTRY_KEYS.get(table)
        if key is None:
            raise ValueError(
                f"existing_ids: unknown table {table!r}; use one of {list(reg.REGISTRY_KEYS)}"
            )
        wanted = list(dict.fromkeys(ids))

        def read(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {key} FROM {table} WHERE {key} IN ({marks})"
                found.update(r[0] for r in conn.execute(sql, chunk))
            return found

        return await self._run(read)

    async def upsert_devices(self, rows: Sequence[DeviceRecord]) -> UpsertResult:
        return await self._upsert(reg.DEVICES, [reg.device_values(r) for r in rows])

    async def upsert_residents(self, rows: Sequence[ResidentRecord]) -> UpsertResult:
        return await self._upsert(reg.RESIDENTS, [reg.resident_values(r) for r in rows])

    async def upsert_responders(self, rows: Sequence[ResponderRecord]) -> UpsertResult:
        return await self._upsert(reg.RESPONDERS_SPEC, [reg.responder_values(r) for r in rows])

    async def _upsert(
        self, spec: reg.TableSpec, rows: list[tuple[str, reg.Values]]
    ) -> UpsertResult:
        def write(conn: sqlite3.Connection) -> UpsertResult:
            with self._tx(conn) as cur:
                current = self._current(cur, spec, list(dict.fromkeys(k for k, _ in rows)))
                plan = reg.plan_upsert(rows, current)
                now = utc_text(datetime.now(UTC))
                ins = reg.insert_sql(spec, _qmark)
                upd = reg.update_sql(spec, _qmark)
                cur.executemany(
                    ins, [(k, *reg.storable(spec, v), now, now) for k, v in plan.inserts]
                )
                cur.executemany(upd, [(*reg.storable(spec, v), now, k) for k, v in plan.updates])
                if spec.extra:
                    self._write_assignments(cur, plan, current)
            return UpsertResult(len(plan.inserts), len(plan.updates), plan.unchanged)

        return await self._run(write)

    @staticmethod
    def _current(
        cur: sqlite3.Cursor, spec: reg.TableSpec, keys: list[str]
    ) -> dict[str, reg.Values]:
        current: dict[str, reg.Values] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            cols = ", ".join(spec.columns)
            sql = f"SELECT {spec.key}, {cols} FROM {spec.table} WHERE {spec.key} IN ({marks})"
            for key, *content in cur.execute(sql, chunk).fetchall():
                current[key] = reg.normalize_row(spec, content)
            if spec.extra:
                assigned: dict[str, list[str]] = {k: [] for k in current}
                sql = (
                    "SELECT resident_id, responder_id FROM resident_responders"
                    f" WHERE resident_id IN ({marks}) ORDER BY resident_id, position"
                )
                for rid, responder in cur.execute(sql, chunk).fetchall():
                    assigned.setdefault(rid, []).append(responder)
                for rid in chunk:
                    if rid in current:
                        current[rid] = (*current[rid], assigned.get(rid, []))
        return current

    @staticmethod
    def _write_assignments(
        cur: sqlite3.Cursor, plan: reg.UpsertPlan, current: dict[str, reg.Values]
    ) -> None:
        final: dict[str, list[str]] = {}
        for key, values in (*plan.inserts, *plan.updates):
            final[key] = values[-1]
        for rid, responders in final.items():
            old = current.get(rid)
            if old is not None and old[-1] == responders:
                continue
            cur.execute("DELETE FROM resident_responders WHERE resident_id = ?", (rid,))
            # dict.fromkeys: a responder listed twice keeps its first position only.
            cur.executemany(
                "INSERT INTO resident_responders (resident_id, responder_id, position)"
                " VALUES (?, ?, ?)",
                [(rid, r, i) for i, r in enumerate(dict.fromkeys(responders))],
            )

    async def _all(self, spec: reg.TableSpec) -> dict[str, reg.Values]:
        def read(conn: sqlite3.Connection) -> dict[str, reg.Values]:
            cur = conn.cursor()
            sql = f"SELECT {spec.key} FROM {spec.table} ORDER BY {spec.key}"
            keys = [k for (k,) in cur.execute(sql).fetchall()]
            return self._current(cur, spec, keys)

        return await self._run(read)

    async def devices(self) -> list[DeviceRecord]:
        return [reg.device_record(k, v) for k, v in (await self._all(reg.DEVICES)).items()]

    async def residents(self) -> list[ResidentRecord]:
        return [reg.resident_record(k, v) for k, v in (await self._all(reg.RESIDENTS)).items()]

    async def responders(self) -> list[ResponderRecord]:
        rows = await self._all(reg.RESPONDERS_SPEC)
        return [reg.responder_record(k, v) for k, v in rows.items()]

    # -- reading back -----------------------------------------------------------------------
    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        args = [_param(p) for p in params]

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            # The authorizer makes "read-only" a property of the statement, enforced by SQLite
            # at prepare time: a write through query() fails with "not authorized".
            conn.set_authorizer(_read_only)
            try:
                return [tuple(r) for r in conn.execute(sql, args).fetchall()]
            finally:
                conn.set_authorizer(None)

        return await self._run(read)

    async def pending_devices(self) -> list[PendingDevice]:
        rows = await self.query(
            "SELECT device_id, first_seen, last_seen, messages, sos_count, last_kind,"
            " last_payload FROM pending_devices ORDER BY last_seen DESC, device_id"
        )
        return [PendingDevice(*r) for r in rows]


def _read_only(
    action: int, _a: str | None, arg2: str | None, _db: str | None, _t: str | None
) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    # Reading a pragma (arg2 is its value, None when only read) is harmless; setting one is not.
    if action == sqlite3.SQLITE_PRAGMA and arg2 is None:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY
