"""The user store (:class:`gateway.users.UserStore`) on PostgreSQL, mixed into
``PostgresStore``. Connections are autocommit: single statements are atomic on their own."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.rows import TupleRow

from gateway.storage import _users as u
from gateway.storage._util import qmark_to_pyformat as pg
from gateway.storage._util import require_aware
from gateway.users import Role, User, UserExistsError

Conn = psycopg.AsyncConnection[TupleRow]

_INSERT_USER: Final = pg(u.INSERT_USER_SQL)
_SET_USER: Final = pg(u.SET_USER_SQL)
_DELETE_USER: Final = pg(u.DELETE_USER_SQL)
_DELETE_USER_SESSIONS: Final = pg(u.DELETE_USER_SESSIONS_SQL)
_LIST_USERS: Final = pg(u.LIST_USERS_SQL)
_USER_BY_TOKEN: Final = pg(u.USER_BY_TOKEN_SQL)
_USER_BY_NAME_TOKEN: Final = pg(u.USER_BY_NAME_TOKEN_SQL)
_INSERT_SESSION: Final = pg(u.INSERT_SESSION_SQL)
_PRUNE_SESSIONS: Final = pg(u.PRUNE_SESSIONS_SQL)
_SESSION_USER: Final = pg(u.SESSION_USER_SQL)
_DELETE_SESSION: Final = pg(u.DELETE_SESSION_SQL)
_DELETE_PENDING: Final = pg(u.DELETE_PENDING_SQL)


def _ps(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(require_aware(v) if isinstance(v, datetime) else v for v in values)


class PostgresUsers:
    """UserStore methods; the host class provides the connection pool."""

    if TYPE_CHECKING:

        def _connection(self) -> AbstractAsyncContextManager[Conn]: ...

    async def _users_exec(self, sql: str, params: tuple[Any, ...]) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(sql, _ps(params))
            return cur.rowcount

    async def _users_fetch(self, sql: str, params: tuple[Any, ...]) -> list[User]:
        async with self._connection() as conn:
            cur = await conn.execute(sql, _ps(params))
            rows = await cur.fetchall()
        return [u.user_from_row(r) for r in rows]

    async def create_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        if await self._users_exec(_INSERT_USER, u.user_row(name, role, token_hash, now)) == 0:
            raise UserExistsError(name)

    async def set_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_SET_USER, _ps(u.user_row(name, role, token_hash, now)))
            await conn.execute(_DELETE_USER_SESSIONS, (name,))  # the old login ends here

    async def delete_user(self, name: str) -> bool:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_DELETE_USER_SESSIONS, (name,))
            cur = await conn.execute(_DELETE_USER, (name,))
            return cur.rowcount == 1

    async def list_users(self) -> list[User]:
        return await self._users_fetch(_LIST_USERS, ())

    async def user_by_token(self, token_hash: str) -> User | None:
        found = await self._users_fetch(_USER_BY_TOKEN, (token_hash,))
        return found[0] if found else None

    async def user_by_name_and_token(self, name: str, token_hash: str) -> User | None:
        found = await self._users_fetch(_USER_BY_NAME_TOKEN, (name, token_hash))
        return found[0] if found else None

    async def create_session(
        self, session_hash: str, user: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_PRUNE_SESSIONS, (require_aware(now),))
            await conn.execute(_INSERT_SESSION, _ps((session_hash, user, now, expires_at)))

    async def session_user(self, session_hash: str, now: datetime) -> User | None:
        found = await self._users_fetch(_SESSION_USER, (session_hash, now))
        return found[0] if found else None

    async def delete_session(self, session_hash: str) -> None:
        await self._users_exec(_DELETE_SESSION, (session_hash,))

    async def delete_pending(self, device_id: str) -> bool:
        return await self._users_exec(_DELETE_PENDING, (device_id,)) == 1
