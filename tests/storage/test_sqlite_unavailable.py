"""SQLite disk faults are StoreError (the spool takes over), SQL mistakes stay bugs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.models import Event, EventType, Reading
from gateway.storage.base import StoreError
from gateway.storage.sqlite import SqliteStore, unavailable


async def test_a_full_disk_is_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "scgw.db"))
    await store.open()
    try:
        # The real SQLITE_FULL path: the file may not grow past its current pages.
        await store._run(
            lambda c: c.execute(
                f"PRAGMA max_page_count = {c.execute('PRAGMA page_count').fetchone()[0]}"
            )
        )
        now = datetime.now(UTC)
        rows = [
            Reading("th-1", "temperature", now.replace(microsecond=i), 1.0) for i in range(5000)
        ]
        with pytest.raises(StoreError, match="full"):
            await store.store_batch(rows, [])
        with pytest.raises(StoreError):
            await store.store_event(Event("btn-1", EventType.SOS, now, now, event_id="e" * 4000))
    finally:
        await store.close()


@pytest.mark.parametrize(
    "message",
    ["disk I/O error", "database or disk is full", "attempt to write a readonly database"],
)
def test_disk_faults_without_a_result_code_are_recognised(message: str) -> None:
    assert unavailable(sqlite3.OperationalError(message))


def test_sql_mistakes_are_not_outages() -> None:
    assert not unavailable(sqlite3.OperationalError("no such table: nope"))
    assert not unavailable(sqlite3.IntegrityError("UNIQUE constraint failed"))
    coded = sqlite3.OperationalError("whatever the text")
    coded.sqlite_errorcode = 10 | (13 << 8)  # SQLITE_IOERR_FSYNC
    assert unavailable(coded)
