"""Alert domain types: priorities, states, the escalation plan an alert carries, its timeline.

An alert copies its escalation policy when it opens (Grafana OnCall does the same), so a
policy edited later never changes an alert already in flight. Escalation timers are fields of
the alert in the database (``next_due_at``, ``step_index``, ``claim``), so they survive a
restart and any gateway instance can run a due step; a stale claim does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Priority(StrEnum):
    P1 = "P1"  # life: sos, fall, smoke, gas, co
    P2 = "P2"  # urgent: water_leak, high_temp, welfare check, an SOS device offline
    P3 = "P3"  # maintenance: low_battery, tamper, other devices offline


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


ACTIVE_STATES: tuple[AlertState, ...] = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class Outcome(StrEnum):
    ASSISTED = "assisted"
    FALSE_ALARM = "false_alarm"
    HOSPITAL = "hospital"
    NO_ANSWER = "no_answer"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PolicyStep:
    """One escalation step: who to notify, and how long to wait for an ack before the next.

    Targets: ``assigned``, ``nearest:N``, ``role:R``, ``contacts``, ``responder:ID``.
    """

    targets: tuple[str, ...]
    ack_timeout: float  # seconds


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: str  # an event type ("sos", "smoke", …) or "welfare_check", "device_offline", …
    priority: Priority
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    device_id: str | None = None
    resident_id: str | None = None
    count: int = 1  # the triggering event plus repeats that joined it
    steps: tuple[PolicyStep, ...] = ()
    step_index: int = 0  # the next step to run (the last one repeats)
    next_due_at: datetime | None = None  # None: no escalation pending (acked, closed)
    claim: str | None = None  # token of the run that currently owns the due step
    # The first acknowledgement, kept for good ("user:NAME" or "responder:ID"); who holds
    # the alert now is ``assignee`` (the acker, or whom the desk assigned it to later).
    acked_at: datetime | None = None
    acked_by: str | None = None
    assignee: str | None = None
    incident_id: str | None = None  # grouped with others of its kind and place
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    outcome: Outcome | None = None
    note: str | None = None
    source: str = "mqtt"  # transport of the triggering event: feedback goes back that way
    source_seq: int | None = None  # the device's own seq of that event (serial 81 ack)
    detail: str = "{}"  # JSON: what triggered it (event id, reading value, …)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class NewAlert:
    """What the rules want opened; the store opens it, or joins the active alert of the same
    device (or resident) and kind."""

    id: str
    kind: str
    priority: Priority
    opened_at: datetime
    steps: tuple[PolicyStep, ...]
    first_due_at: datetime  # P1: opened_at (no grouping wait)
    device_id: str | None = None
    resident_id: str | None = None
    source: str = "mqtt"
    source_seq: int | None = None
    # Identifies the trigger (an event's dedup key…): applying the same trigger twice (a
    # redelivered event) changes nothing.
    trigger_key: str | None = None
    actor: str = "system"
    detail: str = "{}"
    # The step to run at first_due_at: 1 when step 0 already went out another way (the
    # outage dispatcher notified while the database was away).
    first_step: int = 0


@dataclass(frozen=True, slots=True)
class OpenResult:
    alert: Alert
    opened: bool  # False: joined an active alert (its count went up)
    applied: bool  # False: this trigger was applied before; nothing changed


def detail_json(**items: object) -> str:
    """The JSON text of a timeline entry's (or an alert's) ``detail``; Chinese kept readable."""
    return json.dumps(items, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """Every state change, notification attempt and human action, with who and when."""

    alert_id: str
    at: datetime
    actor: str  # "system", "device:btn-1", "responder:v-1", "user:alice"
    action: str  # "opened", "repeat", "notify", "step", "acknowledged", "declined", …
    detail: str = "{}"  # JSON


@dataclass(frozen=True, slots=True)
class DueStep:
    """An escalation step this process claimed; ``claim`` must match when it is finished."""

    alert: Alert
    claim: str


class TokenStatus(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class AcceptToken:
    """A one-tap accept link; only the hash of the secret is stored."""

    token_hash: str
    alert_id: str
    responder_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    action: str | None = None


def responder_key(responder_id: str) -> str:
    """How a responder is named in ``acked_by``, ``assignee`` and on timelines."""
    return responder_id if responder_id.startswith("responder:") else f"responder:{responder_id}"


def user_key(name: str) -> str:
    """How a desk user (a login) is named in ``acked_by``, ``assignee`` and on timelines."""
    return name if name.startswith("user:") else f"user:{name}"


@dataclass(frozen=True, slots=True)
class Incident:
    """Alerts of one kind from many devices of one place at once (a power cut, a building's
    smoke alarms), paged to the desk once. Each alert stays an alert of its own."""

    id: str
    kind: str
    place: str  # a building, or "" for the whole site
    priority: Priority
    state: str  # "open" or "closed"
    opened_at: datetime
    updated_at: datetime
    lead_alert_id: str  # the alert whose timeline holds the incident's page
    closed_at: datetime | None = None
    closed_by: str | None = None
