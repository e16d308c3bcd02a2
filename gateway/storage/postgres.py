"""PostgreSQL backend (production): psycopg 3 async with a connection pool.

* Readings arrive in batches: one transaction ``COPY``s them into a per-connection staging
  table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING`` moves them into ``readings``; the
  insert's row count is the number of new readings, the rest were duplicates.
* Events are stored one by one, each in a single statement (one round trip, atomic).
* Connections are autocommit; every multi-statement write is an explicit transaction.
* Unreachable database (refused, dropped, pool timeout, lock timeout) → ``StoreError``;
  anything else (bad SQL, bad data) stays the exception it is: that is a bug to see.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool

from devices.models import DeviceHealth, Event, PendingSighting, Reading
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import UpsertResult
from gateway.storage import _registry as reg
from gateway.storage import schema_postgres as schema
from gateway.storage._util import (
    as_json_text,
    escaped,
    fold_pending,
    qmark_to_pyformat,
    require_aware,
)
from gateway.storage.alerts_postgres import PostgresAlerts
from gateway.storage.audit_postgres import PostgresAudit
from gateway.storage.base import (
    BatchResult,
    FloodFlag,
    PendingDevice,
    StoreError,
    StoreRefused,
)
from gateway.storage.reads import ReadQueries
from gateway.storage.schema_postgres import Month
from gateway.storage.users_postgres import PostgresUsers

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]

# A CREATE/DROP of a partition needs an exclusive lock on the parent table; waiting behind a
# long analyst query would stall every writer queued behind us, so give up and let the caller
# retry instead.
PARTITION_LOCK_TIMEOUT: Final = "2s"

# psycopg_pool retries a lost connection with doubling delays until reconnect_timeout (default
# five minutes): after a long outage the next attempt could be a minute away although the
# database is back. Giving up early lets the next waiting write start a fresh attempt at once.
RECONNECT_GIVE_UP_S: Final = 2.0
CHECK_IDLE_AFTER_S: Final = 2.0  # a pooled connection unused this long is checked before use

# Per-connection staging table for COPY; rows vanish at commit, the table stays (no catalog
# churn per batch, unlike CREATE TEMP TABLE … ON COMMIT DROP).
_STAGING_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS readings_stage ("
    " time timestamptz, device_id text, metric text, value double precision)"
    " ON COMMIT DELETE ROWS"
)
_COPY_SQL: Final = "COPY readings_stage (time, device_id, metric, value) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES: Final = ("timestamptz", "text", "text", "float8")
# The usual batch has no stored duplicates: a plain INSERT is about twice as fast as ON CONFLICT
# (speculative insertion costs a third WAL record and a second index descent per row). When it
# meets a stored duplicate it fails with unique_violation and the batch falls back to
# ON CONFLICT DO NOTHING. DISTINCT ON drops duplicates inside the batch itself.
# ORDER BY: concurrent gateways inserting overlapping keys (a redelivery reaching another
# instance) then take index locks in the same order and cannot deadlock.
_INSERT_NEW_SQL: Final = (
    "INSERT INTO readings (time, device_id, metric, value)"
    " SELECT DISTINCT ON (device_id, metric, time) time, device_id, metric, value"
    " FROM readings_stage ORDER BY device_id, metric, time"
)
_MERGE_SQL: Final = (
    "INSERT INTO readings (time, device_id, metric, value)"
    " SELECT time, device_id, metric, value FROM readings_stage"
    " ORDER BY device_id, metric, time ON CONFLICT DO NOTHING"
)

_HEALTH_SQL: Final = """
INSERT INTO device_state AS s (device_id, last_seen, battery, online, online_at, fw, rssi)
SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::boolean[],
                     %s::timestamptz[], %s::text[], %s::float8[])
ORDER BY 1
ON CONFLICT (device_id) DO UPDATE SET
  last_seen = GREATEST(s.last_seen, excluded.last_seen),
  battery = CASE WHEN excluded.battery IS NOT NULL AND excluded.last_seen >= s.last_seen
                 THEN excluded.battery ELSE s.battery END,
  fw = CASE WHEN excluded.fw IS NOT NULL AND excluded.last_seen >= s.last_seen
            THEN excluded.fw ELSE s.fw END,
  rssi = CASE WHEN excluded.rssi IS NOT NULL AND excluded.last_seen >= s.last_seen
              THEN excluded.rssi ELSE s.rssi END,
  online = CASE WHEN excluded.online IS NOT NULL
                 AND (s.online_at IS NULL OR excluded.last_seen >= s.online_at)
                THEN excluded.online ELSE s.online END,
  online_at = CASE WHEN excluded.online IS NOT NULL
                    AND (s.online_at IS NULL OR excluded.last_seen >= s.online_at)
                   THEN excluded.last_seen ELSE s.online_at END
"""

_PENDING_SQL: Final = """
INSERT INTO pending_devices AS p
  (device_id, first_seen, last_seen, messages, sos_count, last_kind, last_payload)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET
  first_seen = LEAST(p.first_seen, excluded.first_seen),
  last_seen = GREATEST(p.last_seen, excluded.last_seen),
  messages = p.messages + excluded.messages,
  sos_count = p.sos_count + excluded.sos_count,
  last_kind = CASE WHEN excluded.last_seen >= p.last_seen
                   THEN excluded.last_kind ELSE p.last_kind END,
  last_payload = CASE WHEN excluded.last_seen >= p.last_seen
                      THEN excluded.last_payload ELSE p.last_payload END
"""

_EVENT_COLS: Final = "time, device_id, type, event_id, seq, battery, source, payload, received_at"
_EVENT_PARAMS: Final = (
    "%s::timestamptz, %s::text, %s::text, %s::text, %s::bigint, %s::integer, %s::text,"
    " %s::json, %s::timestamptz"
)
_EVENT_SQL: Final = f"INSERT INTO events ({_EVENT_COLS}) VALUES ({_EVENT_PARAMS})"
# Key and event in one statement: atomic without an explicit transaction, one round trip.
_EVENT_DEDUP_SQL: Final = f"""
WITH k AS (
  INSERT INTO event_keys (device_id, dedup_key, time) VALUES (%s, %s, %s)
  ON CONFLICT (device_id, dedup_key) DO NOTHING RETURNING 1)
INSERT INTO events ({_EVENT_COLS}) SELECT {_EVENT_PARAMS} WHERE EXISTS (SELECT 1 FROM k)
"""

_NAME_RE: Final = re.compile(schema.PARTITION_NAME_RE)

# Where the extension exists but cannot be created (not preloaded, no privilege), fall back to
# native partitions rather than refuse to start.
_TIMESCALE_UNUSABLE: Final = (
    errors.FeatureNotSupported,
    errors.InsufficientPrivilege,
    errors.ObjectNotInPrerequisiteState,
    errors.UndefinedFile,
)


def _health_rounds(health: Sequence[DeviceHealth]) -> list[list[list[Any]]]:
    """Health as column arrays for one set-based upsert per round.

    One INSERT … ON CONFLICT may not touch a row twice, so round *i* holds each device's
    *i*-th entry (nearly always a single round); rounds run in order, which keeps the merge
    rule exactly as if the entries were applied one by one.
    """
    rounds: list[list[DeviceHealth]] = []
    depth: dict[str, int] = {}
    for h in health:
        i = depth.get(h.device_id, 0)
        depth[h.device_id] = i + 1
        if i == len(rounds):
            rounds.append([])
        rounds[i].append(h)
    return [
        [
            [h.device_id for h in r],
            [require_aware(h.last_seen) for h in r],
            [h.battery for h in r],
            [h.online for h in r],
            [h.last_seen if h.online is not None else None for h in r],
            [h.fw for h in r],
            [None if h.rssi is None else float(h.rssi) for h in r],
        ]
        for r in rounds
    ]


def _months(stamps: Sequence[datetime]) -> set[Month]:
    if not stamps:
        return set()
    lo, hi = min(stamps), max(stamps)  # C loops; a mix of naive and aware raises TypeError
    require_aware(lo)
    require_aware(hi)
    first, last = Month.of(lo), Month.of(hi)
    if first == last:  # the usual batch: a few seconds of telemetry
        return {first}
    return {Month.of(ts) for ts in stamps}


def _pg_placeholder(spec: reg.TableSpec) -> Callable[[str], str]:
    def ph(col: str) -> str:
        return "%s::jsonb" if col in spec.json_columns else "%s"

    return ph


def _where(url: str) -> str:
    """host:port/dbname for messages (never the password)."""
    try:
        p = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable URL>"
    return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


async def _configure(conn: Conn) -> None:
    # JSON comes back as text, as from SQLite: query() returns the same types on both.
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.execute(_STAGING_DDL)


_FLAGS_SQL: Final = (
    "INSERT INTO device_flags (device_id, since, last_over, over_count)"
    " VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (device_id) DO UPDATE SET since = excluded.since,"
    " last_over = greatest(device_flags.last_over, excluded.last_over),"
    " over_count = excluded.over_count"
)
_SET_ASIDE_SQL: Final = (
    "INSERT INTO set_aside (at, lane, source, reason, content) VALUES (%s, %s, %s, %s, %s)"
)


class PostgresStore(PostgresAlerts, PostgresUsers, PostgresAudit, ReadQueries):
    """The :class:`~gateway.storage.base.Store` on PostgreSQL (TimescaleDB when present), and
    via :class:`PostgresAlerts` the :class:`~alerts.store.AlertStore`."""

    backend = "postgres"

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0
    ) -> None:
        """``timeout``: seconds to wait for a connection (open, or from a busy/broken pool)
        before raising ``StoreError``."""
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._where = _where(url)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._returned: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()
        self._native = True  # native partitions (False: TimescaleDB hypertables)
        self._partitions: set[tuple[str, Month]] = set()
        self._partition_lock = asyncio.Lock()
        self._expect_duplicates = False

    # -- plumbing ---------------------------------------------------------------------------
    def _conninfo(self) -> str:
        given = conninfo_to_dict(self.url)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = max(2, math.ceil(self._timeout))
        if "application_name" not in given:
            extra["application_name"] = "scgw"
        return make_conninfo(self.url, **extra)

    def _unavailable(self, exc: BaseException) -> StoreError:
        return StoreError(f"PostgreSQL {self._where} unavailable: {exc}")

    async def _check_if_idle(self, conn: Conn) -> None:
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > CHECK_IDLE_AFTER_S:
            await AsyncConnectionPool.check_connection(conn)

    async def _note_returned(self, conn: Conn) -> None:
        self._returned[conn] = time.monotonic()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self._where} is not open")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # includes PoolTimeout, PoolClosed
            raise self._unavailable(exc) from exc
        except psycopg.DataError as exc:  # a value PostgreSQL cannot store (NUL, range, …)
            raise StoreRefused(f"PostgreSQL refused the content: {exc}") from exc

    async def _write(
        self, needs: Iterable[tuple[str, Month]], fn: Callable[[Conn], Awaitable[T]]
    ) -> T:
        """Run ``fn`` once the partitions it writes into exist.

        A partition in our cache may have been dropped by another process's retention run
        (a device with a wrong clock writing into an old month): then refresh and retry once.
        """
        needs = set(needs)
        await self._ensure_partitions(needs)
        try:
            async with self._connection() as conn:
                return await fn(conn)
        except errors.CheckViolation as exc:
            if not self._native or "no partition" not in str(exc):
                raise
        self._partitions -= needs
        await self._ensure_partitions(needs)
        async with self._connection() as conn:
            return await fn(conn)

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        conninfo = self._conninfo()
        # One direct connection first: a refused port, bad password or missing database fails
        # now with the server's own message instead of a pool timeout later.
        try:
            probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL {self._where}: {exc}") from exc
        await probe.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            kwargs={"autocommit": True},
            configure=_configure,
            # Verify a connection on checkout if it sat idle: after a database restart the
            # first write gets a fresh connection instead of failing on a dead one. Not on
            # every checkout: that is one more round trip for every statement, and the press
            # path makes several (a busy connection that died fails once and is retried).
            check=self._check_if_idle,
            reset=self._note_returned,
            timeout=self._timeout,
            reconnect_timeout=RECONNECT_GIVE_UP_S,
            name="scgw-store",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.OperationalError as exc:
            await pool.close()
            raise self._unavailable(exc) from exc
        self._pool = pool
        try:
            await self.migrate()
            await self._load_partitions()
            now = Month.of(datetime.now(UTC))
            await self._ensure_partitions(
                (t, m) for t in schema.PARTITIONED_TABLES for m in (now, now.next())
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._partitions.clear()
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT 1")

    async def migrate(self) -> int:
        async with self._connection() as conn:
            async with conn.transaction():
                # Two gateways starting at once: the second waits here, then finds the
                # version in place and applies nothing.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.MIGRATION_LOCK_KEY,))
                await conn.execute(schema.SCHEMA_VERSION_DDL)
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                row = await cur.fetchone()
                current = int(row[0]) if row else 0
                timescale = current == 0 and await self._enable_timescale(conn)
                for version, statements in schema.migrations(timescale):
                    if version <= current:
                        continue
                    for stmt in statements:
                        await conn.execute(stmt)
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES (%s)", (version,)
                    )
                    current = version
            cur = await conn.execute(schema.IS_NATIVE_PARTITIONED_SQL)
            row = await cur.fetchone()
            self._native = bool(row and row[0])
        return current

    # -- TimescaleDB: only where the extension exists ---------------------------------------
    async def _enable_timescale(self, conn: Conn) -> bool:
        cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if await cur.fetchone() is None:
            return False
        try:
            async with conn.transaction():  # a savepoint: a failure leaves the migration intact
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except _TIMESCALE_UNUSABLE as exc:
            log.warning("timescaledb is available but unusable (%s); using native partitions", exc)
            return False
        log.info("timescaledb enabled: readings and events become hypertables")
        return True

    # -- native partitions ------------------------------------------------------------------
    async def _load_partitions(self) -> None:
        if not self._native:
            return
        async with self._connection() as conn:
            cur = await conn.execute(schema.LIST_PARTITIONS_SQL, (list(schema.PARTITIONED_TABLES),))
            rows = await cur.fetchall()
        found: set[tuple[str, Month]] = set()
        for _parent, name in rows:
            m = _NAME_RE.match(name)
            if m:
                found.add((m.group(1), Month(int(m.group(2)), int(m.group(3)))))
        self._partitions = found

    async def _ensure_partitions(self, needs: Iterable[tuple[str, Month]]) -> None:
        if not self._native:
            return
        # Also keep next month's partitions ready, so the month boundary never waits on DDL.
        ahead = Month.of(datetime.now(UTC)).next()
        wanted = {*needs, *((t, ahead) for t in schema.PARTITIONED_TABLES)}
        if wanted <= self._partitions:
            return
        async with self._partition_lock:
            missing = sorted(wanted - self._partitions)
            if not missing:
                return
            async with self._connection() as conn:
                for table, month in missing:
                    await self._create_partition(conn, table, month)
                    self._partitions.add((table, month))

    async def _create_partition(self, conn: Conn, table: str, month: Month) -> None:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                await conn.execute(schema.create_partition_sql(table, month))
        except (errors.DuplicateTable, errors.UniqueViolation):
            # Another process created it between IF NOT EXISTS's check and its insert.
            pass
        log.info("partition %s ready", schema.partition_name(table, month))

    async def drop_partitions_older_than(self, days: int) -> list[str]:
        """Retention: drop whole time partitions that end more than ``days`` ago.

        Never a row-by-row DELETE on readings/events (that stalls ingest for minutes). Returns
        the dropped partition (or TimescaleDB chunk) names. Dedup keys older than the cutoff
        go too: ``event_keys`` is small (events, not telemetry) and time-indexed.
        """
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        cutoff = datetime.now(UTC) - timedelta(days=days)
        dropped: list[str] = []
        if not self._native:
            async with self._connection() as conn:
                for table in schema.PARTITIONED_TABLES:
                    cur = await conn.execute(
                        "SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                        (table, cutoff),
                    )
                    dropped.extend(str(r[0]) for r in await cur.fetchall())
                await conn.execute("DELETE FROM event_keys WHERE time < %s", (cutoff,))
            return dropped
        await self._load_partitions()
        async with self._partition_lock, self._connection() as conn:
            for table, month in sorted(self._partitions):
                if month.end() > cutoff:
                    continue
                name = schema.partition_name(table, month)
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
                self._partitions.discard((table, month))
                dropped.append(name)
            await conn.execute("DELETE FROM event_keys WHERE time < %s", (cutoff,))
        return dropped

    # -- ingest -----------------------------------------------------------------------------
    async def store_event(self, event: Event) -> bool:
        ts = require_aware(event.ts)
        key = event.dedup_key
        row = (
            ts,
            event.device_id,
            str(event.type),
            event.event_id if event.event_id is not None else uuid.uuid4().hex,
            event.seq,
            event.battery,
            event.source,
            as_json_text(event.payload),
            require_aware(event.received_at),
        )

        async def write(conn: Conn) -> bool:
            if key is None:
                await conn.execute(_EVENT_SQL, row)
                return True
            cur = await conn.execute(_EVENT_DEDUP_SQL, (event.device_id, key, ts, *row))
            return cur.rowcount == 1

        return await self._write([("events", Month.of(ts))], write)

    async def store_batch(
        self, readings: Sequence[Reading], health: Sequence[DeviceHealth]
    ) -> BatchResult:
        months = _months([r.ts for r in readings])
        rounds = _health_rounds(health)

        async def write(conn: Conn) -> int:
            new = 0
            async with conn.transaction(), conn.cursor() as cur:
                if readings:
                    async with cur.copy(_COPY_SQL) as copy:
                        copy.set_types(list(_COPY_TYPES))
                        for r in readings:
                            await copy.write_row((r.ts, r.device_id, r.metric, r.value))
                    new = await self._insert_staged(conn, cur)
                for columns in rounds:
                    await cur.execute(_HEALTH_SQL, columns)
            return new

        new = await self._write((("readings", m) for m in months), write)
        # Readings that were already stored: likely a redelivery run (after a restart), so
        # the next batch goes straight to ON CONFLICT instead of failing the fast path first.
        self._expect_duplicates = new < len(readings)
        return BatchResult(readings_new=new, readings_duplicate=len(readings) - new)

    async def _insert_staged(self, conn: Conn, cur: psycopg.AsyncCursor[TupleRow]) -> int:
        if not self._expect_duplicates:
            try:
                async with conn.transaction():  # savepoint: a duplicate undoes only this
                    await cur.execute(_INSERT_NEW_SQL)
                    return cur.rowcount
            except errors.UniqueViolation:
                pass
        await cur.execute(_MERGE_SQL)
        return cur.rowcount

    async def record_health(self, health: Sequence[DeviceHealth]) -> None:
        if not health:
            return
        rounds = _health_rounds(health)
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            for columns in rounds:
                await cur.execute(_HEALTH_SQL, columns)

    async def record_pending(self, sightings: Sequence[PendingSighting]) -> None:
        if not sightings:
            return
        rows = [
            (
                f.device_id,
                f.first_seen,
                f.last_seen,
                f.messages,
                f.sos_count,
                f.last_kind,
                f.last_payload,
            )
            for f in fold_pending(sightings)
        ]
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_PENDING_SQL, rows)

    async def set_device_timeouts(self, seconds: Mapping[str, float]) -> None:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("DELETE FROM device_timeouts")
            await cur.executemany(
                "INSERT INTO device_timeouts (type, seconds) VALUES (%s, %s)",
                list(seconds.items()),
            )

    async def save_flags(self, flags: Sequence[FloodFlag]) -> None:
        rows = [(f.device_id, f.since, f.last_over, f.over_count) for f in flags]
        if rows:
            async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_FLAGS_SQL, rows)

    async def flood_flags(self, since: datetime) -> dict[str, FloodFlag]:
        rows = await self._fetch(
            "SELECT device_id, since, last_over, over_count FROM device_flags"
            " WHERE last_over >= %s",
            (require_aware(since),),
        )
        return {str(r[0]): FloodFlag(str(r[0]), r[1], r[2], int(r[3])) for r in rows}

    async def set_aside(
        self, at: datetime, lane: str, source: str, reason: str, content: str
    ) -> None:
        row = (require_aware(at), lane, escaped(source), escaped(reason), escaped(content))
        async with self._connection() as conn:
            await conn.execute(_SET_ASIDE_SQL, row)

    # -- registry ---------------------------------------------------------------------------
    async def registry_version(self) -> int:
        rows = await self._fetch("SELECT version FROM registry_version WHERE id = 1")
        return int(rows[0][0])

    async def known_device_ids(self) -> set[str]:
        return {r[0] for r in await self._fetch("SELECT device_id FROM devices")}

    async def device_exists(self, device_id: str) -> bool:
        rows = await self._fetch("SELECT 1 FROM devices WHERE device_id = %s", (device_id,))
        return bool(rows)

    async def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        key = reg.REGISTRY_KEYS.get(table)
        if key is None:
            raise ValueError(
                f"existing_ids: unknown table {table!r}; use one of {list(reg.REGISTRY_KEYS)}"
            )
        rows = await self._fetch(f"SELECT {key} FROM {table} WHERE {key} = ANY(%s)", (list(ids),))
        return {r[0] for r in rows}

    async def upsert_devices(self, rows: Sequence[DeviceRecord]) -> UpsertResult:
        return await self._upsert(reg.DEVICES, [reg.device_values(r) for r in rows])

    async def upsert_residents(self, rows: Sequence[ResidentRecord]) -> UpsertResult:
        return await self._upsert(reg.RESIDENTS, [reg.resident_values(r) for r in rows])

    async def upsert_responders(self, rows: Sequence[ResponderRecord]) -> UpsertResult:
        return await self._upsert(reg.RESPONDERS_SPEC, [reg.responder_values(r) for r in rows])

    async def _upsert(
        self, spec: reg.TableSpec, rows: list[tuple[str, reg.Values]]
    ) -> UpsertResult:
        ph = _pg_placeholder(spec)
        lock = schema.UPSERT_LOCK_BASE + list(reg.REGISTRY_KEYS).index(spec.table)
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Read-compare-write: two importers at once must not both see an id as new.
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            current = await self._current(cur, spec, list(dict.fromkeys(k for k, _ in rows)))
            plan = reg.plan_upsert(rows, current)
            now = datetime.now(UTC)
            if plan.inserts:
                await cur.executemany(
                    reg.insert_sql(spec, ph),
                    [(k, *reg.storable(spec, v), now, now) for k, v in plan.inserts],
                )
            if plan.updates:
                await cur.executemany(
                    reg.update_sql(spec, ph),
                    [(*reg.storable(spec, v), now, k) for k, v in plan.updates],
                )
            if spec.extra:
                await self._write_assignments(cur, plan, current)
        return UpsertResult(len(plan.inserts), len(plan.updates), plan.unchanged)

    @staticmethod
    async def _current(
        cur: psycopg.AsyncCursor[TupleRow], spec: reg.TableSpec, keys: list[str]
    ) -> dict[str, reg.Values]:
        cols = ", ".join(spec.columns)
        await cur.execute(
            f"SELECT {spec.key}, {cols} FROM {spec.table} WHERE {spec.key} = ANY(%s)", (keys,)
        )
        current = {key: reg.normalize_row(spec, content) for key, *content in await cur.fetchall()}
        if spec.extra:
            await cur.execute(
                "SELECT resident_id, responder_id FROM resident_responders"
                " WHERE resident_id = ANY(%s) ORDER BY resident_id, position",
                (keys,),
            )
            assigned: dict[str, list[str]] = {k: [] for k in current}
            for rid, responder in await cur.fetchall():
                assigned.setdefault(rid, []).append(responder)
            current = {k: (*v, assigned[k]) for k, v in current.items()}
        return current

    @staticmethod
    async def _write_assignments(
        cur: psycopg.AsyncCursor[TupleRow], plan: reg.UpsertPlan, current: dict[str, reg.Values]
    ) -> None:
        final = {key: values[-1] for key, values in (*plan.inserts, *plan.updates)}
        for rid, responders in final.items():
            old = current.get(rid)
            if old is not None and old[-1] == responders:
                continue
            await cur.execute("DELETE FROM resident_responders WHERE resident_id = %s", (rid,))
            if responders:
                await cur.executemany(
                    "INSERT INTO resident_responders (resident_id, responder_id, position)"
                    " VALUES (%s, %s, %s)",
                    [(rid, r, i) for i, r in enumerate(responders)],
                )

    async def _all(self, spec: reg.TableSpec) -> dict[str, reg.Values]:
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT {spec.key} FROM {spec.table} ORDER BY {spec.key}")
            keys = [k for (k,) in await cur.fetchall()]
            current = await self._current(cur, spec, keys)
        return {k: current[k] for k in keys if k in current}

    async def devices(self) -> list[DeviceRecord]:
        return [reg.device_record(k, v) for k, v in (await self._all(reg.DEVICES)).items()]

    async def residents(self) -> list[ResidentRecord]:
        return [reg.resident_record(k, v) for k, v in (await self._all(reg.RESIDENTS)).items()]

    async def responders(self) -> list[ResponderRecord]:
        rows = await self._all(reg.RESPONDERS_SPEC)
        return [reg.responder_record(k, v) for k, v in rows.items()]

    # -- reading back -----------------------------------------------------------------------
    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Always pass a params sequence: with one, psycopg turns the doubled %% back into %.
        pg_sql = qmark_to_pyformat(sql)
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION READ ONLY")
            cur = await conn.execute(pg_sql, list(params))
            return await cur.fetchall()

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Our own fixed reads: one statement, no read-only transaction around it."""
        async with self._connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def pending_devices(self) -> list[PendingDevice]:
        rows = await self._fetch(
            "SELECT device_id, first_seen, last_seen, messages, sos_count, last_kind,"
            " last_payload FROM pending_devices ORDER BY last_seen DESC, device_id"
        )
        return [PendingDevice(*r) for r in rows]
