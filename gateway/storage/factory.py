"""Pick a storage backend from a database URL (``[database] url`` in the config)."""

from __future__ import annotations

from urllib.parse import unquote

from gateway.storage.base import Store

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/path.db`` → ``rel/path.db``; ``sqlite:////abs/path.db`` →
    ``/abs/path.db`` (the SQLAlchemy convention: three slashes, then the path)."""
    if not url.startswith(_SQLITE):
        raise ValueError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(url[len(_SQLITE) :])
    if not path or path.endswith("/"):
        raise ValueError(f"bad SQLite URL {url!r}: it names no database file")
    return path


def open_store(url: str) -> Store:
    """A store for ``url``, not yet opened (``await store.open()`` connects and migrates).

    Backends are imported on demand: the embedded SQLite setup never loads psycopg.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from gateway.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if url.lower().startswith(_POSTGRES):
        from gateway.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unsupported database URL {_redact(url)!r}: expected sqlite:///path/to/scgw.db or "
        "postgresql://user@host:5432/dbname"
    )


def _redact(url: str) -> str:
    """Hide a password (scheme://user:secret@host) in messages."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in creds else url
