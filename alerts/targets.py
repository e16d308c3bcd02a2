"""Who a policy step reaches: ``assigned``, ``nearest:N``, ``role:R``, ``contacts``,
``responder:ID`` resolved against the registry, on-duty schedules, load caps and declines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from alerts.duty import on_duty
from alerts.models import Alert, PolicyStep
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord

# Roles that "nearest" picks from: people who can walk over, not the desk or the family.
FIELD_ROLES = frozenset({"volunteer", "social_worker", "grid_worker", "doctor"})


@dataclass(frozen=True, slots=True)
class Place:
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    grid: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A person to notify: a responder, or one of the resident's family contacts."""

    key: str  # "responder:ID" or "contact:RESIDENT:N"
    name: str
    reason: str  # which policy target named them ("assigned", "nearest:3", …)
    responder: ResponderRecord | None = None
    contact: Contact | None = None


def place_of(resident: ResidentRecord | None, device: DeviceRecord | None) -> Place:
    r = resident
    d = device
    return Place(
        building=(r.building if r and r.building else None) or (d.building if d else None),
        unit=(r.unit if r and r.unit else None) or (d.unit if d else None),
        room=(r.room if r and r.room else None) or (d.room if d else None),
        grid=r.grid if r else None,
    )


def closeness(place: Place, responder: ResponderRecord) -> int:
    """4 same room, 3 same unit, 2 same building, 1 same grid, 0 not near."""
    attrs = dict(responder.attributes)
    same_building = bool(place.building) and responder.building == place.building
    same_unit = same_building and bool(place.unit) and attrs.get("unit") == place.unit
    if same_unit and place.room and attrs.get("room") == place.room:
        return 4
    if same_unit:
        return 3
    if same_building:
        return 2
    if place.grid and responder.grid == place.grid:
        return 1
    return 0


@dataclass(frozen=True, slots=True)
class Resolver:
    responders: Mapping[str, ResponderRecord]
    local_time: Callable[[datetime], datetime]
    max_concurrent: int

    def resolve(
        self,
        step: PolicyStep,
        alert: Alert,
        resident: ResidentRecord | None,
        device: DeviceRecord | None,
        *,
        now: datetime,
        load: Mapping[str, int],
        declined: frozenset[str],
    ) -> list[Target]:
        """Targets of one step in policy order, each person once."""
        local = self.local_time(now)
        chosen: dict[str, Target] = {}

        def available(r: ResponderRecord) -> bool:
            if r.responder_id in declined or not on_duty(r.on_duty, local):
                return False
            # The duty desk takes every alert; others are capped so one volunteer is not
            # handed three emergencies at once.
            return r.role == "duty" or load.get(r.responder_id, 0) < self.max_concurrent

        def add(r: ResponderRecord, reason: str) -> None:
            key = f"responder:{r.responder_id}"
            if key not in chosen and available(r):
                chosen[key] = Target(key, r.name, reason, responder=r)

        for target in step.targets:
            if target == "assigned" and resident is not None:
                for rid in resident.responders:
                    if (r := self.responders.get(rid)) is not None:
                        add(r, target)
            elif target.startswith("nearest:"):
                wanted = int(target.split(":", 1)[1])
                place = place_of(resident, device)
                ranked = sorted(
                    (
                        (closeness(place, r), r.responder_id, r)
                        for r in self.responders.values()
                        if r.role in FIELD_ROLES
                    ),
                    key=lambda item: (-item[0], item[1]),
                )
                picked = 0
                for score, _, r in ranked:
                    if picked >= wanted or score == 0:
                        break
                    if f"responder:{r.responder_id}" not in chosen and available(r):
                        add(r, target)
                        picked += 1
            elif target.startswith("role:"):
                role = target.split(":", 1)[1]
                for r in sorted(self.responders.values(), key=lambda x: x.responder_id):
                    if r.role == role:
                        add(r, target)
            elif target.startswith("responder:"):
                if (r := self.responders.get(target.split(":", 1)[1])) is not None:
                    add(r, target)
            elif target == "contacts" and resident is not None:
                for i, contact in enumerate(resident.contacts):
                    key = f"contact:{resident.resident_id}:{i}"
                    chosen.setdefault(key, Target(key, contact.name, target, contact=contact))
        return list(chosen.values())
