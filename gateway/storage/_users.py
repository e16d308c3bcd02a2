"""Backend-neutral SQL of the user store (``?`` placeholders; PostgreSQL translates them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from gateway.users import Role, User

USER_SELECT: Final = "u.name, u.role, u.created_at"

INSERT_USER_SQL: Final = (
    "INSERT INTO users (name, role, token_hash, created_at, token_set_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING"
)
SET_USER_SQL: Final = (
    "INSERT INTO users (name, role, token_hash, created_at, token_set_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
    " role = excluded.role, token_hash = excluded.token_hash,"
    " token_set_at = excluded.token_set_at"
)
DELETE_USER_SQL: Final = "DELETE FROM users WHERE name = ?"
DELETE_USER_SESSIONS_SQL: Final = "DELETE FROM sessions WHERE user_name = ?"
LIST_USERS_SQL: Final = f"SELECT {USER_SELECT} FROM users u ORDER BY u.name"
USER_BY_TOKEN_SQL: Final = f"SELECT {USER_SELECT} FROM users u WHERE u.token_hash = ?"
USER_BY_NAME_TOKEN_SQL: Final = (
    f"SELECT {USER_SELECT} FROM users u WHERE u.name = ? AND u.token_hash = ?"
)

INSERT_SESSION_SQL: Final = (
    "INSERT INTO sessions (id_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)"
)
PRUNE_SESSIONS_SQL: Final = "DELETE FROM sessions WHERE expires_at <= ?"
SESSION_USER_SQL: Final = (
    f"SELECT {USER_SELECT} FROM sessions s JOIN users u ON u.name = s.user_name"
    " WHERE s.id_hash = ? AND s.expires_at > ?"
)
DELETE_SESSION_SQL: Final = "DELETE FROM sessions WHERE id_hash = ?"
DELETE_PENDING_SQL: Final = "DELETE FROM pending_devices WHERE device_id = ?"


def user_row(name: str, role: Role, token_hash: str, now: datetime) -> tuple[Any, ...]:
    return (name, role.value, token_hash, now, now)


def user_from_row(row: Sequence[Any]) -> User:
    name, role, created_at = row
    return User(name=str(name), role=Role(role), created_at=created_at)
