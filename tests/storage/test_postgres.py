"""PostgreSQL-only behaviour: monthly partitions, retention, outages, concurrent starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
import pytest

from devices.models import DeviceHealth, Event, EventType, Reading
from gateway.storage import schema_postgres
from gateway.storage.base import BatchResult, StoreError
from gateway.storage.postgres import PostgresStore
from gateway.storage.schema_postgres import LATEST, Month
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.postgres

T = TypeVar("T")


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def partitions(store: PostgresStore, table: str) -> set[str]:
    rows = await store.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = ?::regclass",
        (table,),
    )
    return {r[0] for r in rows}


def sos(ts: datetime, seq: int, device: str = "btn-1") -> Event:
    return Event(device, EventType.SOS, ts, ts, seq=seq)


async def test_open_prepares_this_and_next_month(pg: PostgresStore) -> None:
    now = Month.of(datetime.now(UTC))
    for table in ("readings", "events"):
        names = await partitions(pg, table)
        assert f"{table}_{now.suffix()}" in names
        assert f"{table}_{now.next().suffix()}" in names


async def test_a_write_into_a_month_without_partition_creates_it(pg: PostgresStore) -> None:
    ts = datetime(2031, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert "readings_y2031m11" not in await partitions(pg, "readings")
    result = await pg.store_batch(
        [
            Reading("th-1", "temperature", ts, 21.5),
            Reading("th-1", "temperature", ts + timedelta(microseconds=1), 22.0),
        ],
        [],
    )
    assert result == BatchResult(2, 0)
    assert {"readings_y2031m11", "readings_y2031m12"} <= await partitions(pg, "readings")
    assert await pg.store_event(sos(datetime(2019, 2, 1, tzinfo=UTC), 1))
    assert "events_y2019m02" in await partitions(pg, "events")
    rows = await pg.query("SELECT count(*) FROM v_readings")
    assert rows == [(2,)]


async def test_partition_made_by_another_process_is_fine(pg: PostgresStore, pg_url: str) -> None:
    other = PostgresStore(pg_url)
    await other.open()
    try:
        ts = datetime(2030, 5, 5, tzinfo=UTC)
        # Both race to create the same month; neither may fail.
        a, b = await asyncio.gather(
            pg.store_batch([Reading("a", "m", ts, 1.0)], []),
            other.store_batch([Reading("b", "m", ts, 1.0)], []),
        )
        assert a == b == BatchResult(1, 0)
        # The partition exists, but one store's cache has not heard of a third month yet.
        await other.store_batch([Reading("c", "m", datetime(2030, 8, 1, tzinfo=UTC), 1.0)], [])
        assert await pg.store_batch(
            [Reading("d", "m", datetime(2030, 8, 2, tzinfo=UTC), 1.0)], []
        ) == BatchResult(1, 0)
    finally:
        await other.close()


async def test_retention_drops_whole_old_partitions(pg: PostgresStore, pg_url: str) -> None:
    old = datetime(2021, 1, 15, tzinfo=UTC)
    recent = datetime.now(UTC) - timedelta(days=1)
    await pg.store_batch([Reading("th-1", "t", old, 1.0), Reading("th-1", "t", recent, 2.0)], [])
    assert await pg.store_event(sos(old, 1))
    assert await pg.store_event(sos(recent, 1))

    # A second gateway whose partition cache still lists the old month.
    other = PostgresStore(pg_url)
    await other.open()
    try:
        dropped = await pg.drop_partitions_older_than(365)
        assert {"readings_y2021m01", "events_y2021m01"} <= set(dropped)
        this_month = Month.of(datetime.now(UTC)).suffix()
        assert not [name for name in dropped if name.endswith(this_month)]
        assert await pg.query("SELECT value FROM v_readings") == [(2.0,)]
        assert await pg.query("SELECT count(*) FROM v_events") == [(1,)]
        assert await pg.query("SELECT count(*) FROM event_keys") == [(1,)]
        assert "readings_y2021m01" not in await partitions(pg, "readings")

        # A device with a wrong clock writes into the dropped month again: recreated, also
        # by the store whose cache said it existed.
        assert await other.store_batch([Reading("th-1", "t", old, 3.0)], []) == BatchResult(1, 0)
        assert await other.store_event(sos(old, 1))
    finally:
        await other.close()
    with pytest.raises(ValueError, match="days"):
        await pg.drop_partitions_older_than(-1)


async def test_two_gateways_migrate_at_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert [await s.migrate() for s in stores] == [LATEST] * 3
        # Each version applied exactly once, although three migrated at the same time.
        versions = await stores[0].query("SELECT version FROM schema_version ORDER BY version")
        # Version numbers are reserved per branch, so the list may have gaps.
        assert versions == [(v,) for v, _ in schema_postgres.migrations(timescale=False)]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_unreachable_server_is_a_store_error_fast() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    store = PostgresStore(url, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.ping()
    with pytest.raises(StoreError):
        await store.store_event(sos(datetime.now(UTC), 1))
    assert time.monotonic() - started < 5


async def test_sql_errors_stay_errors(pg: PostgresStore) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        await pg.query("SELECT * FROM no_such_table")
    await pg.ping()  # the pool recovered from the failed statement


async def retry(write: Callable[[], Awaitable[T]], attempts: int = 10) -> T:
    """What the ingest pipeline does with a StoreError: try again (each try waits up to the
    store's timeout for a connection, so no sleep is needed)."""
    for _ in range(attempts - 1):
        try:
            return await write()
        except StoreError:
            continue
    return await write()


@pytest.mark.fault(
    "PostgreSQL stopped under the store",
    checks="writes fail as StoreError (retryable), succeed after restart",
)
async def test_database_outage_then_recovery(pg_owned_server: PostgresServer) -> None:
    url = pg_owned_server.create_database("outage")
    store = PostgresStore(url, timeout=1.0)
    await store.open()
    try:
        t = datetime.now(UTC)
        assert await store.store_event(sos(t, 1))
        pg_owned_server.stop()

        with pytest.raises(StoreError, match="unavailable"):
            await store.ping()
        with pytest.raises(StoreError):
            await store.store_event(sos(t, 2))
        with pytest.raises(StoreError):
            await store.store_batch([Reading("th-1", "t", t, 1.0)], [DeviceHealth("th-1", t)])
        with pytest.raises(StoreError):
            await store.query("SELECT 1")

        pg_owned_server.start()
        # The caller retries what failed; the pool replaces its dead connections.
        recovering = time.monotonic()
        assert await retry(lambda: store.store_event(sos(t, 2)))
        assert time.monotonic() - recovering < 5
        assert await store.store_event(sos(t, 2)) is False
        assert await store.store_batch([Reading("th-1", "t", t, 1.0)], []) == BatchResult(1, 0)
        rows = await store.query("SELECT count(*) FROM v_events")
        assert rows == [(2,)]
    finally:
        await store.close()


async def test_batch_of_5000_readings_is_fast(pg: PostgresStore) -> None:
    """A regression guard, not the benchmark: row-by-row writes would take seconds."""
    base = datetime.now(UTC) - timedelta(hours=1)
    metrics = ("temperature", "humidity", "gas_ppm", "battery", "rssi")
    best = float("inf")
    for i in range(5):
        ts = base + timedelta(seconds=i)
        batch = [Reading(f"dev-{k % 1000:04d}", metrics[k // 1000], ts, 20.0) for k in range(5000)]
        started = time.perf_counter()
        assert await pg.store_batch(batch, []) == BatchResult(5000, 0)
        best = min(best, time.perf_counter() - started)
    assert best < 0.5
