"""Storage fixtures: one ``store`` fixture, parametrised over both backends.

The contract tests take ``store`` and must pass unchanged on SQLite and PostgreSQL. The
PostgreSQL case asks for ``pg_url`` (suite conftest) only when it runs, so the SQLite half
needs no server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from gateway.storage.base import Store
from gateway.storage.factory import open_store
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

# A fixed, recent instant: PostgreSQL creates month partitions for whatever the tests write.
T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
CST = timezone(timedelta(hours=8))  # China Standard Time: what devices here send
NST = timezone(timedelta(hours=-3, minutes=-30))  # a negative, non-whole-hour offset


def url_for(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    return url_for(str(request.param), request)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def columns_of(store: Store, relation: str) -> list[str]:
    """Column names of ``SELECT * FROM relation``, from a raw cursor description."""
    sql = f"SELECT * FROM {relation} LIMIT 0"
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            return [d[0] for d in conn.execute(sql).description]
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url) as pg:
        cur = pg.execute(sql)
        assert cur.description is not None
        return [d.name for d in cur.description]
