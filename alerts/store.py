"""The storage the alert engine needs; both backends (SQLite, PostgreSQL) implement it.

Every method is one transaction, committed when it returns. State changes are conditional
(``WHERE state IN …``, ``WHERE claim = …``) so two gateway instances, or a late timer, can
never apply a change twice or act on a stale view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from alerts.models import (
    AcceptToken,
    Alert,
    AlertState,
    DueStep,
    Incident,
    NewAlert,
    OpenResult,
    Outcome,
    Priority,
    TimelineEntry,
    TokenStatus,
)


class AlertStore(Protocol):
    async def open_or_join(self, new: NewAlert) -> OpenResult:
        """If ``new.trigger_key`` was applied before: the alert it went to, applied=False.
        Else, if an active alert (open/acknowledged) exists for the same device (or, with no
        device, the same resident) and kind: count += 1, a "repeat" timeline entry, joined.
        Else insert it (state open, step_index first_step, next_due_at = first_due_at) with an
        "opened" timeline entry. Safe against a concurrent opener (unique active key)."""

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def active_alerts(
        self, *, device_id: str | None = None, resident_id: str | None = None
    ) -> list[Alert]:
        """Open/acknowledged alerts of a device or resident, newest first."""

    async def list_alerts(
        self,
        *,
        states: Sequence[AlertState] = (),
        priorities: Sequence[Priority] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Alert]:
        """Filtered on opened_at; ordered by priority, then opened_at (oldest first)."""

    async def timeline(self, alert_id: str) -> list[TimelineEntry]:
        """In time order (insertion order for equal times)."""

    async def add_timeline(self, entries: Sequence[TimelineEntry]) -> None: ...

    async def link_resident(
        self, device_id: str, resident_id: str, at: datetime, actor: str
    ) -> list[str]:
        """A device registered after it raised alerts (an unregistered device's alarm): its
        active alerts without a resident get ``resident_id``, each with a timeline entry.
        Returns their ids."""

    async def transition(
        self,
        alert_id: str,
        *,
        from_states: Sequence[AlertState],
        to_state: AlertState,
        entry: TimelineEntry,
        acked_by: str | None = None,
        outcome: Outcome | None = None,
        note: str | None = None,
        assignee: str | None = None,
    ) -> Alert | None:
        """Change state only if the alert is in one of ``from_states``; None otherwise.
        To acknowledged: acked_at/acked_by set unless already set (the first ack is kept),
        ``assignee`` (default: the acker) set, escalation stopped (next_due_at NULL).
        To resolved/cancelled: resolved_at/resolved_by (= entry.actor), outcome, note set,
        escalation stopped. To open (an ack that timed out): next_due_at = entry.at.
        The timeline entry is written in the same transaction."""

    async def claim_due(self, now: datetime, *, lease: float, limit: int = 20) -> list[DueStep]:
        """Open alerts whose next_due_at <= now, P1 first then oldest due: each gets a fresh
        claim token and next_due_at = now + lease (so a crashed runner's step runs again after
        the lease). Concurrent claimers never get the same alert (PostgreSQL: SKIP LOCKED)."""

    async def finish_step(
        self, alert_id: str, claim: str, *, next_step_index: int, next_due_at: datetime | None
    ) -> bool:
        """Record that the claimed step ran: only if the claim still matches and the alert is
        still open. False means stale (acked, closed or re-claimed meanwhile)."""

    async def escalate_now(self, alert_id: str, entry: TimelineEntry) -> bool:
        """Make an open alert's next step due at ``entry.at`` (a decline moves on at once);
        clears any claim. False when the alert is not open."""

    async def next_due_time(self) -> datetime | None:
        """The earliest next_due_at of open alerts (for the dispatcher's sleep)."""

    async def create_tokens(self, tokens: Sequence[AcceptToken]) -> None: ...

    async def peek_token(
        self, token_hash: str, now: datetime
    ) -> tuple[TokenStatus, AcceptToken | None]:
        """Status of a link without using it (a GET, a chat app's link preview)."""

    async def use_token(
        self, token_hash: str, now: datetime, action: str
    ) -> tuple[TokenStatus, AcceptToken | None]:
        """Atomically use a link once: OK marks it used (used_at, action); a second use gets
        USED, an old one EXPIRED, a wrong one UNKNOWN."""

    # -- incidents ---------------------------------------------------------------------------
    async def join_incident(
        self, proposal: Incident, alert_ids: Sequence[str], *, hold: Sequence[str] = ()
    ) -> tuple[Incident, list[str]]:
        """Attach ``alert_ids`` (active, in no incident yet) to the open incident of
        ``proposal.kind`` and ``proposal.place``, creating it from ``proposal`` when there
        is none (one open incident per kind and place, also across instances). Alerts in
        ``hold`` also stop their own escalation. Returns the incident and the ids that
        joined now; the incident is new when its id is ``proposal.id``."""

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(self, *, open_only: bool = True, limit: int = 100) -> list[Incident]:
        """Newest first."""

    async def incident_alerts(self, incident_id: str) -> list[Alert]:
        """Every alert of the incident, open or closed, oldest first."""

    async def close_incident(self, incident_id: str, at: datetime, by: str) -> Incident | None:
        """Mark an open incident closed; None when it was not open."""

    async def responder_load(self, responder_ids: Sequence[str]) -> dict[str, int]:
        """How many acknowledged (not yet closed) alerts each responder holds (is the
        assignee of), by bare responder id."""


@dataclass(frozen=True, slots=True)
class DevicePresence:
    """A registered device as the offline check sees it (``v_devices``)."""

    device_id: str
    type: str
    resident_id: str | None
    last_seen: datetime | None  # None: never seen (not installed yet)
    online: bool


class CheckReads(Protocol):
    """What the periodic checks (devices offline, residents without activity) read."""

    async def device_presence(self) -> list[DevicePresence]:
        """Every registered device with its last-seen time and online flag, ordered by id."""

    async def last_activity(self, event_types: Sequence[str]) -> dict[str, datetime]:
        """Per resident: the time of the latest event of one of ``event_types`` from any of
        their devices. Residents with no such event are absent."""


class EngineStore(AlertStore, CheckReads, Protocol):
    """Everything the alert engine and its dispatchers need of storage."""
