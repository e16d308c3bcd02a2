"""The user store (:class:`gateway.users.UserStore`) on SQLite, mixed into ``SqliteStore``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.storage import _users as u
from gateway.storage._util import utc_text
from gateway.users import Role, User, UserExistsError

T = TypeVar("T")


def _p(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


class SqliteUsers:
    """UserStore methods; the host class provides the worker thread and transactions."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        @staticmethod
        def _tx(conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Cursor]: ...

    async def _users_exec(self, sql: str, params: tuple[Any, ...]) -> int:
        args = tuple(_p(v) for v in params)

        def write(conn: sqlite3.Connection) -> int:
            with self._tx(conn) as cur:
                cur.execute(sql, args)
                return cur.rowcount

        return await self._run(write)

    async def _users_fetch(self, sql: str, params: tuple[Any, ...]) -> list[User]:
        args = tuple(_p(v) for v in params)

        def read(conn: sqlite3.Connection) -> list[User]:
            return [u.user_from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._run(read)

    async def create_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        if await self._users_exec(u.INSERT_USER_SQL, u.user_row(name, role, token_hash, now)) == 0:
            raise UserExistsError(name)

    async def set_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        row = tuple(_p(v) for v in u.user_row(name, role, token_hash, now))

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.execute(u.SET_USER_SQL, row)
                cur.execute(u.DELETE_USER_SESSIONS_SQL, (name,))  # the old login ends here

        await self._run(write)

    async def delete_user(self, name: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            with self._tx(conn) as cur:
                cur.execute(u.DELETE_USER_SESSIONS_SQL, (name,))
                cur.execute(u.DELETE_USER_SQL, (name,))
                return cur.rowcount == 1

        return await self._run(write)

    async def list_users(self) -> list[User]:
        return await self._users_fetch(u.LIST_USERS_SQL, ())

    async def user_by_token(self, token_hash: str) -> User | None:
        found = await self._users_fetch(u.USER_BY_TOKEN_SQL, (token_hash,))
        return found[0] if found else None

    async def user_by_name_and_token(self, name: str, token_hash: str) -> User | None:
        found = await self._users_fetch(u.USER_BY_NAME_TOKEN_SQL, (name, token_hash))
        return found[0] if found else None

    async def create_session(
        self, session_hash: str, user: str, now: datetime, expires_at: datetime
    ) -> None:
        row = (session_hash, user, _p(now), _p(expires_at))
        now_t = _p(now)

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.execute(u.PRUNE_SESSIONS_SQL, (now_t,))
                cur.execute(u.INSERT_SESSION_SQL, row)

        await self._run(write)

    async def session_user(self, session_hash: str, now: datetime) -> User | None:
        found = await self._users_fetch(u.SESSION_USER_SQL, (session_hash, now))
        return found[0] if found else None

    async def delete_session(self, session_hash: str) -> None:
        await self._users_exec(u.DELETE_SESSION_SQL, (session_hash,))

    async def delete_pending(self, device_id: str) -> bool:
        return await self._users_exec(u.DELETE_PENDING_SQL, (device_id,)) == 1
