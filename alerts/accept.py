"""One-tap accept links: ``{public_url}/r/{token}``, no login, single use, expiring.

The token is the credential: 24 random bytes (192 bits, URL-safe base64, 32 characters), and
only its SHA-256 is stored, so a database dump or backup hands out no working link. A link is
per responder and per alert. Looking at a link (``view``) never acts, because chat apps fetch
links to build previews; acting (``act``) uses the link once, atomically in the store, and only
then asks the engine to accept or decline, so two taps (or two devices) act once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from alerts.models import AcceptToken, Alert, AlertState, TokenStatus
from devices.records import DeviceRecord, ResidentRecord
from devices.registry import RegistryView

TOKEN_BYTES = 24  # 192 bits ≥ 128: unguessable even at millions of guesses per second
_TOKEN_SHAPE = re.compile(r"\A[A-Za-z0-9_-]{16,128}\Z")
ACTIONS: tuple[str, ...] = ("accept", "decline")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the store keeps and looks up (hex SHA-256). No salt is needed: the token is
    random and long, so there is no dictionary to precompute."""
    return hashlib.sha256(token.encode("ascii", errors="replace")).hexdigest()


def looks_like_token(token: str) -> bool:
    """Shape check before any lookup: junk (or a path trick) never reaches the store."""
    return _TOKEN_SHAPE.match(token) is not None


def link(public_url: str, token: str) -> str:
    """``{public_url}/r/{token}``: the page with the alert and the two buttons."""
    return f"{public_url.rstrip('/')}/r/{token}"


def decline_link(public_url: str, token: str) -> str:
    """The same page with decline in front; a POST to it without a body declines."""
    return f"{link(public_url, token)}?action=decline"


class TokenStore(Protocol):
    """The part of ``AlertStore`` links need."""

    async def create_tokens(self, tokens: Sequence[AcceptToken]) -> None: ...

    async def peek_token(
        self, token_hash: str, now: datetime
    ) -> tuple[TokenStatus, AcceptToken | None]: ...

    async def use_token(
        self, token_hash: str, now: datetime, action: str
    ) -> tuple[TokenStatus, AcceptToken | None]: ...


async def issue_tokens(
    store: TokenStore,
    alert_id: str,
    responder_ids: Sequence[str],
    now: datetime,
    ttl: timedelta | float,
) -> dict[str, str]:
    """A fresh link token per responder (duplicates collapse); only hashes are stored, in one
    call. ``ttl`` in seconds or as a timedelta. Returns responder id → token."""
    lifetime = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if lifetime <= timedelta(0):
        raise ValueError("accept link ttl must be positive")
    tokens = {rid: new_token() for rid in dict.fromkeys(responder_ids)}
    if tokens:
        await store.create_tokens(
            [
                AcceptToken(
                    token_hash=hash_token(token),
                    alert_id=alert_id,
                    responder_id=rid,
                    created_at=now,
                    expires_at=now + lifetime,
                )
                for rid, token in tokens.items()
            ]
        )
    return tokens


# -- what the engine does with a tap ---------------------------------------------------------
class ActionResult(Protocol):
    """The engine's answer to a tap (``alerts.engine.ActionOutcome`` is one).

    ``status``: ``"done"`` (also when this responder already had it: taps are idempotent),
    ``"taken"`` (acknowledged by someone, see ``alert.acked_by``), ``"closed"`` (resolved or
    cancelled meanwhile) or ``"not_found"``."""

    @property
    def status(self) -> str: ...

    @property
    def alert(self) -> Alert | None: ...


class AlertActions(Protocol):
    """Implemented by the alert engine; ``via`` says where the tap came from ("link", "app")."""

    async def accept(self, alert_id: str, responder_id: str, via: str) -> ActionResult: ...

    async def decline(self, alert_id: str, responder_id: str, via: str) -> ActionResult: ...


@dataclass(frozen=True, slots=True)
class AlertView:
    alert: Alert
    resident: ResidentRecord | None = None
    device: DeviceRecord | None = None


class AlertLookup(Protocol):
    async def alert_view(self, alert_id: str) -> AlertView | None: ...


class _AlertSource(Protocol):
    async def get_alert(self, alert_id: str) -> Alert | None: ...


class RegistryLookup:
    """An ``AlertLookup`` from the alert store and the registry view."""

    def __init__(self, store: _AlertSource, registry: RegistryView) -> None:
        self._store = store
        self._registry = registry

    async def alert_view(self, alert_id: str) -> AlertView | None:
        alert = await self._store.get_alert(alert_id)
        if alert is None:
            return None
        device = self._registry.device(alert.device_id)
        resident = self._registry.resident(alert.resident_id) or self._registry.resident_of(
            alert.device_id
        )
        return AlertView(alert, resident, device)


# -- the service behind /r/{token} -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkView:
    """What a GET shows. Alert details only while the link is usable: an old link in a chat
    history should not keep showing a resident's address and phone."""

    status: TokenStatus
    token: AcceptToken | None = None
    view: AlertView | None = None

    @property
    def usable(self) -> bool:
        """The link works and the alert still wants an answer from this responder."""
        if self.status is not TokenStatus.OK or self.view is None:
            return False
        alert = self.view.alert
        if alert.state is AlertState.OPEN:
            return True
        return alert.state is AlertState.ACKNOWLEDGED and self._mine(alert)

    @property
    def taken_by_other(self) -> bool:
        if self.view is None:
            return False
        alert = self.view.alert
        return alert.state is AlertState.ACKNOWLEDGED and not self._mine(alert)

    @property
    def closed(self) -> bool:
        return self.view is not None and not self.view.alert.active

    def _mine(self, alert: Alert) -> bool:
        return self.token is not None and _acked_by(alert, self.token.responder_id)


def _acked_by(alert: Alert, responder_id: str) -> bool:
    """Whether this responder holds the alert now (accepted it, or was assigned it)."""
    return (alert.assignee or alert.acked_by) == f"responder:{responder_id}"


class ActStatus(StrEnum):
    DONE = "done"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    BAD_ACTION = "bad_action"
    TAKEN = "taken"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ActResult:
    status: ActStatus
    action: str | None = None
    token: AcceptToken | None = None  # USED: ``token.action``/``used_at`` say how it was used
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ActStatus.DONE

    @property
    def alert_id(self) -> str | None:
        return self.token.alert_id if self.token else None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AcceptService:
    def __init__(
        self,
        store: TokenStore,
        actions: AlertActions,
        lookup: AlertLookup | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
        via: str = "link",
    ) -> None:
        self._store = store
        self._actions = actions
        self._lookup = lookup
        self._clock = clock
        self._via = via

    async def view(self, token: str) -> LinkView:
        """The link's status and, while usable, the alert. Never changes anything."""
        if not looks_like_token(token):
            return LinkView(TokenStatus.UNKNOWN)
        status, record = await self._store.peek_token(hash_token(token), self._clock())
        if status is not TokenStatus.OK or record is None or self._lookup is None:
            return LinkView(status, record)
        return LinkView(status, record, await self._lookup.alert_view(record.alert_id))

    async def act(self, token: str, action: str) -> ActResult:
        """Use the link once for ``action`` ("accept"/"decline"), then tell the engine."""
        action = action.strip().lower()
        if action not in ACTIONS:
            # Checked before the store: a malformed request must not burn the link.
            return ActResult(ActStatus.BAD_ACTION, detail=f"action must be one of {ACTIONS}")
        if not looks_like_token(token):
            return ActResult(ActStatus.UNKNOWN, action)
        status, record = await self._store.use_token(hash_token(token), self._clock(), action)
        if status is TokenStatus.UNKNOWN or record is None:
            return ActResult(ActStatus.UNKNOWN, action)
        if status is TokenStatus.USED:
            return ActResult(ActStatus.USED, action, record)
        if status is TokenStatus.EXPIRED:
            return ActResult(ActStatus.EXPIRED, action, record)
        handler = self._actions.accept if action == "accept" else self._actions.decline
        result = await handler(record.alert_id, record.responder_id, self._via)
        answer = str(result.status)
        alert = result.alert
        if answer == "done":
            return ActResult(ActStatus.DONE, action, record)
        if answer == "taken" and alert is not None:
            if _acked_by(alert, record.responder_id):
                # This responder already has it (accepted in the app first): the tap agrees.
                return ActResult(ActStatus.DONE, action, record, "already yours")
            return ActResult(ActStatus.TAKEN, action, record, "accepted by someone else")
        if answer == "not_found":
            return ActResult(ActStatus.CLOSED, action, record, "the alert no longer exists")
        return ActResult(ActStatus.CLOSED, action, record, f"alert {answer}")
