"""Logins for the duty-desk API and dashboard: users, roles, API tokens and browser sessions.

A user has one role and one API token. The token is shown once (``scgw users add``) and only
its SHA-256 is stored: it is 192 random bits, so no salt or slow hash is needed (there is no
dictionary to precompute against), and a database dump hands out no working credential. The
dashboard login takes the user name and that token and opens a session; a session id is a
fresh random secret whose hash is stored in the database, so sessions survive a restart and
work on every gateway instance that shares the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol

TOKEN_PREFIX: Final = "scgw_"  # makes a leaked token easy to spot (secret scanners, logs)
TOKEN_BYTES: Final = 24  # 192 bits
SESSION_BYTES: Final = 32
NAME_RE: Final = re.compile(r"\A[\w.@-]{1,64}\Z")
_TOKEN_SHAPE: Final = re.compile(r"\A[A-Za-z0-9_-]{16,128}\Z")


class Role(StrEnum):
    ADMIN = "admin"
    DUTY = "duty"
    RESPONDER = "responder"
    TECHNICIAN = "technician"
    VIEWER = "viewer"


class Perm(StrEnum):
    READ = "read"  # alerts, devices, readings, stats, residents and responders (no contacts)
    CONTACTS = "contacts"  # residents' phones, medical notes, family contacts; responder phones
    ALERT_ACT = "alert_act"  # acknowledge, resolve, notes
    ALERT_ASSIGN = "alert_assign"  # hand an alert to a responder
    DEVICES = "devices"  # register devices, adopt pending ones
    USERS = "users"  # create and remove logins
    AUDIT = "audit"  # read the audit log (who did what, who read which resident's card)


ROLE_PERMS: Final[dict[Role, frozenset[Perm]]] = {
    Role.ADMIN: frozenset(Perm),
    Role.DUTY: frozenset({Perm.READ, Perm.CONTACTS, Perm.ALERT_ACT, Perm.ALERT_ASSIGN}),
    # Volunteers and social workers on the way need the phone and the health notes.
    Role.RESPONDER: frozenset({Perm.READ, Perm.CONTACTS, Perm.ALERT_ACT}),
    Role.TECHNICIAN: frozenset({Perm.READ, Perm.DEVICES}),
    Role.VIEWER: frozenset({Perm.READ}),
}


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    created_at: datetime | None = None

    def can(self, perm: Perm) -> bool:
        return perm in ROLE_PERMS[self.role]

    @property
    def perms(self) -> frozenset[Perm]:
        return ROLE_PERMS[self.role]


class UserExistsError(Exception):
    """A user of that name exists already."""


def check_name(name: str) -> str:
    """User names: letters (any script), digits, ``_ . @ -``; 1-64 characters."""
    if not NAME_RE.match(name):
        raise ValueError(f"bad user name {name!r}: use 1-64 letters, digits or _ . @ - (no spaces)")
    return name


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown role {text!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_BYTES)


def looks_like_secret(text: str) -> bool:
    """Shape check before any lookup: junk never reaches the database."""
    return _TOKEN_SHAPE.match(text) is not None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", errors="replace")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session, derived from its secret id.

    The page reads it from ``/api/v1/me`` (same origin only) and sends it in the
    ``X-CSRF-Token`` header with every state-changing call; another site can make the browser
    send the cookie but can read neither the cookie nor this value.
    """
    return hmac.new(session_id.encode(), b"scgw-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_id), presented)


class UserStore(Protocol):
    """Users and sessions; both backends implement it (``gateway/storage/users_*.py``)."""

    async def create_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        """Raises ``UserExistsError`` when the name is taken."""

    async def set_user(self, name: str, role: Role, token_hash: str, now: datetime) -> None:
        """Create, or replace role and token (the old token and its sessions stop working)."""

    async def delete_user(self, name: str) -> bool:
        """Remove the user and its sessions; False when there was none."""

    async def list_users(self) -> list[User]: ...

    async def user_by_token(self, token_hash: str) -> User | None: ...

    async def user_by_name_and_token(self, name: str, token_hash: str) -> User | None: ...

    async def create_session(
        self, session_hash: str, user: str, now: datetime, expires_at: datetime
    ) -> None:
        """Also drops expired sessions (of anyone), so the table never grows stale."""

    async def session_user(self, session_hash: str, now: datetime) -> User | None: ...

    async def delete_session(self, session_hash: str) -> None: ...

    async def delete_pending(self, device_id: str) -> bool:
        """Remove a device from the pending list (it was adopted); False when not there."""


async def fresh_login(store: UserStore, name: str, role: Role, now: datetime) -> str:
    """Create ``name`` or give it a new token (the old token and its sessions stop working);
    returns the token. For ``scgw demo``, which prints a login on every start."""
    token = new_token()
    await store.set_user(check_name(name), role, hash_secret(token), now)
    return token


def login_banner(base_url: str, name: str, token: str) -> str:
    return "\n".join(
        [
            f"  login / 登录:  {base_url.rstrip('/')}/login",
            f"    user / 用户名: {name}   token / 令牌: {token}",
            "",
        ]
    )
