"""Request and response bodies of ``/api/v1`` (they are the OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from alerts.models import AlertState, Outcome, Priority
from devices.models import DeviceType
from gateway.users import Perm, Role

T = TypeVar("T")

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # device ids (SPEC), alert ids (hex), user names
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _no_control(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and other control characters in a note are a paste
    # accident; newlines and tabs are fine.
    if any(ord(c) < 32 and c not in "\n\r\t" for c in text):
        raise ValueError("must not contain control characters")
    return text


def _in_range(at: datetime) -> datetime:
    # Bounded so every instant converts to UTC and fits both databases.
    if not _EARLIEST <= at <= _LATEST:
        raise ValueError("must be between 2000-01-01 and 2200-01-01")
    return at


Text = Annotated[str, Field(max_length=200), AfterValidator(_no_control)]
NoteText = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_control)]
Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Labels(_Out):
    """The same word in Chinese and English (the dashboard switches without a request)."""

    zh: str
    en: str


class Page(_Out, Generic[T]):
    items: list[T]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page; null on the last")


# -- alerts --------------------------------------------------------------------------------
class AlertOut(_Out):
    id: str
    kind: str
    kind_label: Labels
    priority: Priority
    priority_label: Labels
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    device_id: str | None
    device_name: str | None
    resident_id: str | None
    resident_name: str | None
    address: Labels | None
    count: int = Field(description="the triggering event plus repeats that joined it")
    acked_at: datetime | None = Field(description="the first acknowledgement (kept for good)")
    acked_by: str | None = Field(description="who first acknowledged: user:NAME or responder:ID")
    assignee: str | None = Field(
        default=None, description="who holds it now (the acker, or whom the desk assigned)"
    )
    incident_id: str | None = Field(
        default=None, description="grouped with alerts of the same kind and place"
    )
    resolved_at: datetime | None
    resolved_by: str | None
    outcome: Outcome | None
    note: str | None
    unreached: bool = Field(description="an escalation step reached nobody: the desk must act")


class AnswersOut(_Out):
    """Who the current escalation step asked and how they answered (people as responder:ID)."""

    step: int | None
    asked: list[str]
    declined: list[str]
    unreached: list[str]
    pending: list[str]


class IncidentOut(_Out):
    id: str
    kind: str
    kind_label: Labels
    place: str = Field(description="a building, or empty for the whole site")
    priority: Priority
    state: str = Field(description="open or closed")
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    devices: list[str]
    alerts: list[AlertOut]


class TimelineOut(_Out):
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class ContactOut(_Out):
    name: str
    phone: str | None


class ResponderBrief(_Out):
    responder_id: str
    name: str
    role: str
    phone: str | None


class ResidentOut(_Out):
    resident_id: str
    name: str
    address: Labels
    building: str | None
    unit: str | None
    room: str | None
    grid: str | None
    lives_alone: bool
    phone: str | None
    medical_notes: str | None
    contacts: list[ContactOut]
    responders: list[ResponderBrief]
    contact_details: bool = Field(
        description="false: phone, medical notes and contacts' phones are withheld for this role"
    )


class DeviceOut(_Out):
    device_id: str
    type: str
    type_label: Labels
    name: str | None
    resident_id: str | None
    building: str | None
    unit: str | None
    room: str | None
    address: Labels
    last_seen: datetime | None
    battery: int | None
    online: bool
    rssi: float | None
    offline: bool = Field(description="reported offline, or silent past its type's timeout")
    low_battery: bool
    never_seen: bool
    rate_limited: bool = Field(
        default=False,
        description="sent telemetry over its rate limit (flooding) and is not quiet again yet;"
        " kept in the answering gateway process's memory",
    )
    rate_limited_since: datetime | None = Field(
        default=None, description="first refused message since the device was last quiet"
    )
    rate_limited_last: datetime | None = Field(
        default=None, description="the latest refused message"
    )
    rejected_recently: int = Field(
        default=0,
        description="messages over the rate since rate_limited_since"
        " (kept unless [ingest] flood_action = discard)",
    )


class AlertDetail(AlertOut):
    timeline: list[TimelineOut]
    answers: AnswersOut
    resident: ResidentOut | None
    device: DeviceOut | None


class ResolveIn(_In):
    outcome: Outcome
    note: NoteText | None = None


class AssignIn(_In):
    responder_id: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_control)]


class NoteIn(_In):
    text: NoteText


# -- devices -------------------------------------------------------------------------------
class DeviceIn(_In):
    type: DeviceType
    name: Text | None = None
    resident_id: Text | None = None
    building: Text | None = None
    unit: Text | None = None
    room: Text | None = None


class PendingOut(_Out):
    device_id: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    sos_count: int = Field(description="SOS presses from this unregistered device")
    last_kind: str
    last_payload: str


class ReadingPoint(_Out):
    time: datetime = Field(description="start of the bucket (or the reading's own time)")
    avg: float
    min: float
    max: float
    count: int


class ReadingSeries(_Out):
    metric: str
    points: list[ReadingPoint]


class ReadingsOut(_Out):
    device_id: str
    bucket: str | None
    since: datetime
    until: datetime
    truncated: bool = Field(description="more raw readings matched: ask with a bucket")
    series: list[ReadingSeries]


# -- people --------------------------------------------------------------------------------
class ResponderOut(_Out):
    responder_id: str
    name: str
    role: str
    phone: str | None
    building: str | None
    grid: str | None
    skills: list[str]
    on_duty: str | None = Field(description="the schedule as written in the registry")
    on_duty_now: bool
    active_alerts: int = Field(description="acknowledged alerts this responder holds")


# -- stats ---------------------------------------------------------------------------------
class ResponseGroup(_Out):
    period_start: datetime | None = Field(description="local (Asia/Shanghai) start; null: all")
    priority: Priority | Literal["all"]
    alerts: int = Field(description="alerts opened (cancelled before any answer not counted)")
    acknowledged: int
    p50_s: float | None = Field(description="median seconds from open to first acknowledgement")
    p90_s: float | None
    within_60s: float | None = Field(description="share of alerts acknowledged within 60 s")
    within_180s: float | None


class ResponseStats(_Out):
    since: datetime
    until: datetime
    period: Literal["all", "day", "week", "month"]
    groups: list[ResponseGroup]


# -- users and the session -------------------------------------------------------------------
class UserOut(_Out):
    name: str
    role: Role
    created_at: datetime | None


class UserIn(_In):
    name: Annotated[str, Field(pattern=r"^[\w.@-]{1,64}$")]
    role: Role


class NewUserOut(UserOut):
    token: str = Field(description="the API token: shown this once, stored only hashed")


class MeOut(_Out):
    name: str
    role: Role
    perms: list[Perm]
    via: Literal["token", "session"]
    csrf_token: str | None = Field(
        description="send as X-CSRF-Token with state-changing calls made with the session"
    )


class MetaOut(_Out):
    kinds: dict[str, Labels]
    priorities: dict[str, Labels]
    outcomes: dict[str, Labels]
    device_types: dict[str, Labels]
    buckets: list[str]
    low_battery: int


class AuditOut(_Out):
    """One entry of the audit log (``gateway/audit.py``)."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target_kind: str
    target_id: str | None
    detail: dict[str, Any]
    client_ip: str | None


class Problem(_Out):
    detail: str
