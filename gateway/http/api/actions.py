"""What the desk does to an alert beyond the engine's own actions: assign it to a responder,
and write notes. Acknowledge and resolve go straight to :class:`alerts.engine.AlertEngine`.

Assigning is the desk saying "this volunteer has it" (usually after a phone call): the alert
becomes acknowledged with the responder as owner (so escalation stops and the responder's
load counts it), the device hears "helper on the way", and the responder gets the alert on
their channels, without an accept link, since there is nothing left to accept.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from enum import StrEnum

from alerts.channels.base import Recipient, make_notice
from alerts.models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from devices.feedback import Feedback, FeedbackKind
from devices.records import ResponderRecord
from gateway.http.api.console import Console
from gateway.storage.base import StoreError

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
        self._tasks: set[asyncio.Task[None]] = set()

    async def _responder(self, responder_id: str) -> ResponderRecord | None:
        registry = self._console.registry
        if responder_id not in registry.responders:
            # Imported a moment ago in another process: look again before saying no.
            await registry.refresh()
        return registry.responders.get(responder_id)

    async def assign(self, alert_id: str, responder_id: str, user: str) -> AssignResult:
        console = self._console
        responder = await self._responder(responder_id)
        if responder is None:
            return AssignResult(AssignStatus.UNKNOWN_RESPONDER)
        before = await console.store.get_alert(alert_id)
        if before is None:
            return AssignResult(AssignStatus.NOT_FOUND)
        entry = TimelineEntry(
            alert_id,
            console.now(),
            f"user:{user}",
            "assigned",
            _json(responder_id=responder_id, name=responder.name),
        )
        alert = await console.store.transition(
            alert_id,
            from_states=ACTIVE_STATES,
            to_state=AlertState.ACKNOWLEDGED,
            entry=entry,
            acked_by=responder_id,
        )
        if alert is None:
            current = await console.store.get_alert(alert_id)
            return AssignResult(AssignStatus.CLOSED, current)
        if before.state is AlertState.OPEN:
            await self._tell_device(alert)
        task = asyncio.create_task(self._notify(alert, responder), name=f"assign-{alert_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return AssignResult(AssignStatus.DONE, alert)

    async def _tell_device(self, alert: Alert) -> None:
        """The resident's device: "a helper is on the way" (as the engine does on accept)."""
        if alert.device_id is None:
            return
        engine = self._console.engine
        sent = await engine.feedback.send(
            Feedback(
                alert.device_id,
                FeedbackKind.RESPONDER_ASSIGNED,
                alert.id,
                alert.source,
                seq=alert.source_seq,
            )
        )
        await self._console.store.add_timeline(
            [
                TimelineEntry(
                    alert.id,
                    self._console.now(),
                    "system",
                    "device_feedback",
                    _json(cmd=FeedbackKind.RESPONDER_ASSIGNED.value, sent=sent),
                )
            ]
        )

    async def _notify(self, alert: Alert, responder: ResponderRecord) -> None:
        """In the background: a slow channel must not hold the desk's click."""
        notifier = self._console.notifier
        if notifier is None:
            return
        registry = self._console.registry
        resident = registry.resident(alert.resident_id) or registry.resident_of(alert.device_id)
        recipient = Recipient.for_responder(responder)
        notice = make_notice(alert, resident, registry.device(alert.device_id), lang=recipient.lang)
        outcome = await notifier.notify(recipient, notice)
        at = self._console.now()
        entries = [
            TimelineEntry(
                alert.id,
                at,
                "system",
                "notify",
                _json(
                    recipient=recipient.key,
                    channel=d.channel,
                    ok=d.ok,
                    detail=d.detail,
                    attempt=d.attempt,
                    why="assigned",
                ),
            )
            for d in outcome.attempts
        ] or [
            TimelineEntry(
                alert.id,
                at,
                "system",
                "notify",
                _json(recipient=recipient.key, ok=False, detail="no channel", why="assigned"),
            )
        ]
        try:
            await self._console.store.add_timeline(entries)
        except StoreError as exc:  # the notice went out; only its record is missing
            log.warning("alert %s: could not record the assignment notice: %s", alert.id, exc)

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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
