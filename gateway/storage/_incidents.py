"""Backend-neutral SQL of incidents (alerts grouped by kind and place; alerts/store.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from alerts.models import Incident, Priority
from gateway.storage._alerts import as_instant, marks

INCIDENT_COLUMNS: Final = (
    "id",
    "kind",
    "place",
    "priority",
    "state",
    "opened_at",
    "updated_at",
    "lead_alert_id",
    "closed_at",
    "closed_by",
)
INCIDENT_SELECT: Final = ", ".join(INCIDENT_COLUMNS)

# ON CONFLICT without a target: the partial unique index (one open incident per kind and
# place) turns a concurrent second insert into nothing, on both backends.
INSERT_INCIDENT_SQL: Final = (
    f"INSERT INTO incidents ({INCIDENT_SELECT}) VALUES ({marks(len(INCIDENT_COLUMNS))})"
    " ON CONFLICT DO NOTHING"
)
OPEN_INCIDENT_SQL: Final = (
    f"SELECT {INCIDENT_SELECT} FROM incidents WHERE kind = ? AND place = ? AND state = 'open'"
)
GET_INCIDENT_SQL: Final = f"SELECT {INCIDENT_SELECT} FROM incidents WHERE id = ?"
LIST_INCIDENTS_SQL: Final = (
    f"SELECT {INCIDENT_SELECT} FROM incidents WHERE state IN ({{states}})"
    " ORDER BY opened_at DESC, id LIMIT ?"
)
CLOSE_INCIDENT_SQL: Final = (
    "UPDATE incidents SET state = 'closed', closed_at = ?, closed_by = ?, updated_at = ?"
    f" WHERE id = ? AND state = 'open' RETURNING {INCIDENT_SELECT}"
)
TOUCH_INCIDENT_SQL: Final = "UPDATE incidents SET updated_at = ? WHERE id = ?"


def member_sql(n: int, hold: bool) -> str:
    """Attach active alerts that are in no incident yet; ``hold`` also stops their own
    escalation (the incident's page to the desk stands for it). RETURNING the ids joined."""
    held = ", next_due_at = NULL, claim = NULL" if hold else ""
    return (
        f"UPDATE alerts SET incident_id = ?{held} WHERE id IN ({marks(n)})"
        " AND incident_id IS NULL AND state IN ('open', 'acknowledged') RETURNING id"
    )


def incident_row(i: Incident) -> tuple[Any, ...]:
    return (
        i.id,
        i.kind,
        i.place,
        str(i.priority),
        i.state,
        i.opened_at,
        i.updated_at,
        i.lead_alert_id,
        i.closed_at,
        i.closed_by,
    )


def incident_from_row(row: Sequence[Any]) -> Incident:
    id_, kind, place, priority, state, opened, updated, lead, closed, closed_by = row
    opened_at, updated_at = as_instant(opened), as_instant(updated)
    if opened_at is None or updated_at is None:
        raise ValueError("an incident's opened_at/updated_at is NULL in the database")
    return Incident(
        id=str(id_),
        kind=str(kind),
        place=str(place),
        priority=Priority(str(priority)),
        state=str(state),
        opened_at=opened_at,
        updated_at=updated_at,
        lead_alert_id=str(lead),
        closed_at=as_instant(closed),
        closed_by=None if closed_by is None else str(closed_by),
    )
