"""What the desk does to an alert beyond the engine's own actions: assign it to a responder,
and write notes. Acknowledge and resolve go straight to :class:`alerts.engine.AlertEngine`.

Assigning is the desk saying "this volunteer has it" (usually after a phone call); the engine
does it (``AlertEngine.assign``): the first acknowledgement stays, the responder becomes the
assignee and hears "assigned to you".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum

from alerts.engine import ActionStatus
from alerts.models import Alert, TimelineEntry
from devices.records import ResponderRecord
from gateway.http.api.console import Console

log = logging.getLogger(__name__)


class AssignStatus(StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"
    CLOSED = "closed"
    UNKNOWN_RESPONDER = "unknown_responder"


@dataclass(frozen=True, slots=True)
class AssignResult:
    status: AssignStatus
    alert: Alert | None = None


def _json(**items: object) -> str:
    return json.dumps(items, ensure_ascii=False, default=str)


class DeskActions:
    def __init__(self, console: Console) -> None:
        self._console = console

    async def _responder(self, responder_id: str) -> ResponderRecord | None:
        registry = self._console.registry
        if responder_id not in registry.responders:
            # Imported a moment ago in another process: look again before saying no.
            await registry.refresh()
        return registry.responders.get(responder_id)

    async def assign(self, alert_id: str, responder_id: str, user: str) -> AssignResult:
        responder = await self._responder(responder_id)
        if responder is None:
            return AssignResult(AssignStatus.UNKNOWN_RESPONDER)
        outcome = await self._console.engine.assign(alert_id, responder_id, responder.name, user)
        if outcome.status is ActionStatus.NOT_FOUND:
            return AssignResult(AssignStatus.NOT_FOUND)
        if not outcome.ok:
            return AssignResult(AssignStatus.CLOSED, outcome.alert)
        return AssignResult(AssignStatus.DONE, outcome.alert)

    async def note(self, alert_id: str, user: str, text: str) -> TimelineEntry | None:
        """A note on the timeline (also on a closed alert: the report is often written
        after). None when the alert does not exist."""
        if await self._console.store.get_alert(alert_id) is None:
            return None
        entry = TimelineEntry(
            alert_id, self._console.now(), f"user:{user}", "note", _json(text=text)
        )
        await self._console.store.add_timeline([entry])
        return entry

    async def stop(self) -> None:
        """Nothing of its own runs in the background (follow-ups are the announcer's)."""
