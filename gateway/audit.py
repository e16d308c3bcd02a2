"""The audit log: who did what, to what, from where — every human action on the duty desk
(acknowledge, assign, resolve, notes, accept/decline by link, logins, users, devices) and
every read of a resident's card (phone, medical notes, family contacts).

It is append-only from the gateway's side (no update or delete method exists) and lives in
the same database as the alerts, so it survives restarts and is shared by every instance.
Only admins read it (``GET /api/v1/audit``). Tokens and passwords are never written to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

MAX_DETAIL: Final = 4000  # characters of detail JSON kept per entry


class AuditAction(StrEnum):
    LOGIN = "session.login"
    LOGIN_FAILED = "session.login_failed"
    LOGOUT = "session.logout"
    ALERT_ACK = "alert.ack"
    ALERT_RESOLVE = "alert.resolve"
    ALERT_ASSIGN = "alert.assign"
    ALERT_NOTE = "alert.note"
    LINK_ACCEPT = "alert.accept"
    LINK_DECLINE = "alert.decline"
    DEVICE_PUT = "device.put"
    DEVICE_ADOPT = "device.adopt"
    USER_CREATE = "user.create"
    USER_DELETE = "user.delete"
    RESIDENT_READ = "resident.read"
    RESIDENTS_LIST = "residents.list"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str  # a user name, or "responder:ID" for an accept link
    role: str  # the user's role, or "link"
    action: str  # an AuditAction value
    target_kind: str  # "alert", "resident", "device", "user", "session"
    target_id: str | None
    detail: str  # a JSON object
    client_ip: str | None
    id: int | None = None  # set by the store


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``GET /api/v1/audit``; every given field must match. Newest first."""

    actor: str | None = None
    action: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


class AuditStore(Protocol):
    """Both backends implement it (``gateway/storage/audit_*.py``)."""

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append and commit."""

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]: ...


def detail_json(detail: Mapping[str, object]) -> str:
    text = json.dumps(dict(detail), ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > MAX_DETAIL:
        # Cut to a valid object that says so, rather than a broken string.
        text = json.dumps({"truncated": True, "text": text[: MAX_DETAIL - 100]}, ensure_ascii=False)
    return text


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Auditor:
    """Writes entries. Callers await it before answering: a resident's card is only shown
    once its read is on record (a failed write answers 503 like any store outage)."""

    def __init__(self, store: AuditStore, clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self._clock = clock

    async def record(
        self,
        *,
        actor: str,
        role: str,
        action: AuditAction,
        target_kind: str,
        target_id: str | None = None,
        client_ip: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            at=self._clock(),
            actor=actor,
            role=role,
            action=action.value,
            target_kind=target_kind,
            target_id=target_id,
            detail=detail_json(detail or {}),
            client_ip=client_ip,
        )
        await self.store.record_audit([entry])
        return entry
