"""What durable input sets in motion: the alert side, behind the intake's ``Consequences``
port (gateway/intake/consequences.py), and the timeline record of device feedback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from alerts.engine import AlertEngine
from alerts.models import TimelineEntry, detail_json
from alerts.outage import OutageDispatcher, OutageNotice
from alerts.replies import Reply
from alerts.store import AlertStore
from devices.feedback import Feedback, FeedbackKind
from devices.models import Event, Reading
from gateway.metrics import Metrics
from gateway.storage.base import StoreError

log = logging.getLogger(__name__)


class EventListener(Protocol):
    async def handle_event(self, event: Event, *, duplicate: bool) -> None: ...


class AlertConsequences:
    """Implements ``gateway.intake.consequences.Consequences`` with the alert engine and,
    while the database is away, the outage dispatcher."""

    def __init__(
        self, *, engine: AlertEngine, outage: OutageDispatcher | None, metrics: Metrics
    ) -> None:
        self._engine = engine
        self._feedback = engine.feedback
        self._outage = outage
        self._metrics = metrics
        self._listeners: list[EventListener] = []

    def listen(self, listener: EventListener) -> None:
        """Also tell ``listener`` of every event acted on (the source tests observe here)."""
        self._listeners.append(listener)

    async def event_stored(self, event: Event, *, duplicate: bool) -> None:
        # A failure here (a bug) goes to the event path's poison guard: the input is retried,
        # then left for a redelivery — an alarm is never acked without its alert.
        if not event.replay:  # a retained copy of old state: stored, never a new alert
            await self._engine.handle_event(event, duplicate=duplicate)
        for listener in self._listeners:
            await listener.handle_event(event, duplicate=duplicate)

    async def unregistered_alarm(self, event: Event) -> None:
        if not event.replay:
            await self._engine.raise_unregistered(event)

    def event_spooling(self, event: Event) -> bool:
        outage = self._outage
        if outage is None or event.replay:
            return False
        alert_id = outage.start(event)
        if alert_id is None:
            return False
        # The event is durable in the spool: the resident hears "received" now, not when the
        # database is back (the alert will carry this id).
        self._feedback.tell(
            Feedback(
                event.device_id, FeedbackKind.ALERT_RECEIVED, alert_id, event.source, event.seq
            )
        )
        return True

    async def event_replayed(self, event: Event, *, duplicate: bool) -> None:
        outage, key = self._outage, event.dedup_key
        notice = await outage.wait_for(key) if outage is not None and key is not None else None
        if event.replay:
            return
        try:
            await self._engine.handle_event(event, duplicate=duplicate, notice=notice)
        except StoreError:
            raise  # the database went away again: the drain resumes at this record
        except Exception:  # logged with traceback and counted; see below
            # The event is stored already; one poisonous replay must not wedge the drain and
            # with it every later record. Loud: log and metric.
            self._metrics.handler_errors.labels(handler=self._engine.name).inc()
            log.exception("alert engine failed on replayed %s of %s", event.type, event.device_id)
        for listener in self._listeners:
            await listener.handle_event(event, duplicate=duplicate)

    def notice_drained(self, notice: OutageNotice) -> None:
        if self._outage is not None:
            self._outage.forget(notice.event_key)

    async def readings_stored(self, readings: Sequence[Reading]) -> None:
        await self._engine.handle_readings(readings)

    async def reply(self, reply: Reply) -> None:
        await self._engine.handle_reply(reply)


class FeedbackTimeline:
    """Puts each device feedback's outcome on its alert's timeline (``FeedbackQueue``'s
    ``on_result``). Bookkeeping: with the database away the entry is skipped, not retried."""

    def __init__(self, store: AlertStore) -> None:
        self._store = store

    async def __call__(self, feedback: Feedback, sent: bool, why: str) -> None:
        entry = TimelineEntry(
            feedback.alert_id,
            datetime.now(UTC),
            "system",
            "device_feedback",
            detail_json(cmd=feedback.kind.value, sent=sent, detail=why),
        )
        try:
            await self._store.add_timeline([entry])
        except StoreError as exc:
            log.warning("feedback to %s not on the timeline: %s", feedback.device_id, exc)
