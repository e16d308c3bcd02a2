"""SQLite-only behaviour: durability settings, kill -9, locks and unusable files."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.models import Event, EventType
from gateway.storage import schema_sqlite
from gateway.storage.base import StoreError
from gateway.storage.schema_sqlite import LATEST
from gateway.storage.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]


def sos(event_id: str) -> Event:
    now = datetime.now(UTC)
    return Event("btn-1", EventType.SOS, now, now, event_id=event_id)


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "scgw.db"))
    await store.open()
    try:
        assert await store.query("PRAGMA journal_mode") == [("wal",)]
        assert await store.query("PRAGMA synchronous") == [(2,)]  # FULL
    finally:
        await store.close()


@pytest.mark.fault(
    "SQLite writer SIGKILLed right after a write returned",
    checks="the write is on disk (WAL, full sync)",
)
def test_a_returned_write_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "scgw.db"
    child = textwrap.dedent(
        """
        import asyncio, sys
        from datetime import UTC, datetime
        from devices.models import Event, EventType
        from gateway.storage.sqlite import SqliteStore

        async def main() -> None:
            store = SqliteStore(sys.argv[1])
            await store.open()
            now = datetime.now(UTC)
            await store.store_event(Event("btn-1", EventType.SOS, now, now, event_id="k9"))
            print("stored", flush=True)
            sys.stdin.read()  # hold the store open until killed

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(db)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "stored"
    finally:
        proc.kill()
        proc.wait(timeout=30)

    async def check() -> list[tuple[object, ...]]:
        store = SqliteStore(str(db))
        await store.open()
        try:
            return await store.query("SELECT event_id FROM v_events")
        finally:
            await store.close()

    assert asyncio.run(check()) == [("k9",)]


@pytest.mark.fault(
    "SQLite database locked by another process",
    checks="StoreError (retried), not a crash",
)
async def test_a_locked_database_is_a_store_error(tmp_path: Path) -> None:
    path = str(tmp_path / "scgw.db")
    store = SqliteStore(path, busy_timeout=0.1)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked"):
            await store.store_event(sos("a"))
        other.execute("ROLLBACK")
        assert await store.store_event(sos("a")) is True
    finally:
        other.close()
        await store.close()


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = SqliteStore(str(blocker / "sub" / "scgw.db"))
    with pytest.raises(StoreError, match="a-file"):
        await store.open()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "scgw.db"
    path.write_bytes(b"this is no SQLite file, just some text" * 100)
    with pytest.raises(StoreError):
        await SqliteStore(str(path)).open()


async def test_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "scgw.db"))
    with pytest.raises(StoreError, match="not open"):
        await store.ping()
    await store.open()
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreError, match="not open"):
        await store.store_event(sos("x"))


async def test_sql_errors_stay_errors(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "scgw.db"))
    await store.open()
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store.query("SELECT * FROM no_such_table")
        await store.ping()
    finally:
        await store.close()


async def test_two_processes_migrate_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "scgw.db")
    stores = [SqliteStore(path) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert [await s.migrate() for s in stores] == [LATEST] * 3
        # Each version applied exactly once, although three migrated at the same time.
        versions = await stores[0].query("SELECT version FROM schema_version ORDER BY version")
        # Version numbers are reserved per branch, so the list may have gaps.
        assert versions == [(v,) for v, _ in schema_sqlite.MIGRATIONS]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_parent_directories_are_created(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "var" / "lib" / "scgw" / "scgw.db"))
    await store.open()
    await store.close()
    assert (tmp_path / "var" / "lib" / "scgw" / "scgw.db").is_file()
