"""Database URL → backend."""

from __future__ import annotations

import pytest

from gateway.storage.factory import open_store, sqlite_path
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///scgw.db", "scgw.db"),
        ("sqlite:///data/scgw.db", "data/scgw.db"),
        ("sqlite:////var/lib/scgw/scgw.db", "/var/lib/scgw/scgw.db"),
        ("sqlite:///my%20data/scgw.db", "my data/scgw.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store.backend == "sqlite"
    assert store.path == path


@pytest.mark.parametrize(
    "url",
    ["postgresql://scgw@db.example:5432/scgw", "postgres://scgw:pw@127.0.0.1/scgw"],
)
def test_postgres_urls(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store.backend == "postgres"
    assert store.url == url


@pytest.mark.parametrize(
    "url", ["", "scgw.db", "mysql://root@localhost/scgw", "sqlite://", "sqlite:///", "sqlite:x.db"]
)
def test_unknown_or_broken_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///"):
        open_store(url)


def test_the_password_stays_out_of_the_message() -> None:
    with pytest.raises(ValueError, match="unsupported") as info:
        open_store("mysql://root:hunter2@db/scgw")
    assert "hunter2" not in str(info.value)
