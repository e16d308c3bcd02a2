"""The alert engine: events and readings in, alert state changes out.

It is an event-bus handler (``handle_event`` runs after the event is stored and before its
source is acked, so a crash in between is repaired by the redelivery; ``trigger_key`` makes
that redelivery harmless), the target of human actions (accept, decline, acknowledge, resolve)
and the owner of the periodic checks (devices offline, residents without activity).
Notifications are the dispatcher's job: the engine only makes steps due and wakes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from alerts.config import AlertsSettings
from alerts.messages import format_time
from alerts.models import (
    ACTIVE_STATES,
    Alert,
    AlertState,
    NewAlert,
    OpenResult,
    Outcome,
    Priority,
    TimelineEntry,
    detail_json,
)
from alerts.outage import OutageNotice
from alerts.replies import Reply
from alerts.rules import (
    CANCELLABLE_BY_RESIDENT,
    RESTORABLE,
    CancelAlerts,
    OpenAlert,
    RestoreAlerts,
    classify,
)
from alerts.store import DevicePresence, EngineStore
from alerts.thresholds import ThresholdTracker
from devices.feedback import Feedback, FeedbackKind, FeedbackRouter
from devices.models import DeviceType, Event, Reading
from devices.registry import RegistryView

log = logging.getLogger(__name__)

SOS_DEVICES = frozenset({DeviceType.SOS_BUTTON.value, DeviceType.PENDANT.value})
ACTIVITY_EVENTS = ("motion", "door_open", "door_close")


class ActionStatus(StrEnum):
    DONE = "done"
    TAKEN = "taken"  # someone else accepted it first
    CLOSED = "closed"  # resolved or cancelled meanwhile
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    status: ActionStatus
    alert: Alert | None = None

    @property
    def ok(self) -> bool:
        return self.status is ActionStatus.DONE


def outage_entry(alert_id: str, notice: OutageNotice) -> TimelineEntry:
    """ "Notified during database outage at …" on the timeline of the alert it belongs to."""
    return TimelineEntry(
        alert_id,
        notice.at,
        "system",
        "outage_notified",
        detail_json(
            note=f"notified during database outage at {notice.at.isoformat()}",
            note_zh=f"数据库中断期间已通知（{format_time(notice.at)}）",
            step=notice.step,
            targets=list(notice.targets),
            reached=notice.reached,
        ),
    )


class AlertEngine:
    name = "alerts"
    takes_outage_notice = True  # EventBus.deliver passes spool replays' outage notices

    def __init__(
        self,
        *,
        store: EngineStore,
        settings: AlertsSettings,
        registry: RegistryView,
        feedback: FeedbackRouter,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wake_dispatcher: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.registry = registry
        self.feedback = feedback
        self.clock = clock
        self.wake_dispatcher = wake_dispatcher
        self.thresholds = ThresholdTracker(settings.thresholds)
        # Welfare windows count from here at the earliest: no alert for "no activity" that
        # happened before anyone was watching.
        self.started_at = clock()

    # -- opening ----------------------------------------------------------------------------
    async def open(
        self,
        *,
        kind: str,
        priority: Priority,
        device_id: str | None,
        resident_id: str | None,
        at: datetime,
        trigger_key: str | None,
        actor: str,
        source: str = "mqtt",
        source_seq: int | None = None,
        detail: str = "{}",
        notice: OutageNotice | None = None,
    ) -> OpenResult:
        wait = timedelta(seconds=self.settings.group_wait(priority))
        steps = self.settings.steps_for(priority)
        alert_id, first_step, first_due = uuid.uuid4().hex, 0, at + wait
        if notice is not None and steps:
            # Step ``notice.step`` went out during the database outage: the alert keeps the
            # id that notice named, and escalation goes on from the next step, after that
            # step's ack timeout counted from when it went out.
            done = min(notice.step, len(steps) - 1)
            alert_id, first_step = notice.alert_id, notice.step + 1
            first_due = notice.at + timedelta(seconds=steps[done].ack_timeout)
        result = await self.store.open_or_join(
            NewAlert(
                id=alert_id,
                kind=kind,
                priority=priority,
                opened_at=at,
                steps=steps,
                first_due_at=first_due,
                first_step=first_step,
                device_id=device_id,
                resident_id=resident_id,
                source=source,
                source_seq=source_seq,
                trigger_key=trigger_key,
                actor=actor,
                detail=detail,
            )
        )
        if result.applied and result.opened:
            log.info(
                "alert %s opened: %s %s (device %s, resident %s)",
                result.alert.id,
                priority,
                kind,
                device_id,
                resident_id,
            )
            self.wake_dispatcher()
        return result

    async def handle_event(
        self, event: Event, *, duplicate: bool, notice: OutageNotice | None = None
    ) -> None:
        """``notice``: the outage dispatcher already notified for this event (replayed from
        the spool once the database is back)."""
        decision = classify(event)
        if isinstance(decision, OpenAlert):
            device = self.registry.device(event.device_id)
            resident_id = device.resident_id if device else None
            result = await self.open(
                kind=decision.kind,
                priority=decision.priority,
                device_id=event.device_id,
                resident_id=resident_id,
                at=event.ts,
                # Without a device id or seq a redelivery cannot be recognised: each one
                # joins the active alert as a repeat, which is harmless.
                trigger_key=f"event:{event.device_id}:{event.dedup_key or uuid.uuid4().hex}",
                actor=f"device:{event.device_id}",
                source=event.source,
                source_seq=event.seq,
                detail=detail_json(event_id=event.event_id, seq=event.seq, type=event.type.value),
                notice=notice,
            )
            if notice is not None and result.applied:
                await self.store.add_timeline([outage_entry(result.alert.id, notice)])
            # Tell the device its call is in, also for a repeat press (the resident presses
            # again because nothing seemed to happen) and for a redelivery (the first answer
            # may have been lost with the crash).
            await self._tell_device(result.alert, FeedbackKind.ALERT_RECEIVED, event.seq)
        elif isinstance(decision, CancelAlerts):
            await self._withdraw(event, CANCELLABLE_BY_RESIDENT, action="cancel")
        elif isinstance(decision, RestoreAlerts):
            await self._withdraw(event, RESTORABLE, action="restore")

    async def _withdraw(self, event: Event, kinds: frozenset[str], *, action: str) -> None:
        """A resident's cancel or a sensor's restore: within the grace period it cancels the
        alert, except a P1 sensor alarm, which a human must close; otherwise it is noted."""
        grace = timedelta(seconds=self.settings.cancel_grace)
        actor = f"device:{event.device_id}"
        for alert in await self.store.active_alerts(device_id=event.device_id):
            if alert.kind not in kinds:
                continue
            in_grace = event.ts - alert.opened_at <= grace
            needs_human = action == "restore" and alert.priority is Priority.P1
            if in_grace and not needs_human:
                closed = await self.store.transition(
                    alert.id,
                    from_states=(AlertState.OPEN, AlertState.ACKNOWLEDGED),
                    to_state=AlertState.CANCELLED,
                    entry=TimelineEntry(alert.id, event.ts, actor, f"cancelled_by_{action}"),
                )
                if closed is not None:
                    await self._tell_device(closed, FeedbackKind.RESOLVED, event.seq)
            else:
                why = "needs a human to close" if needs_human else "after the grace period"
                await self.store.add_timeline(
                    [TimelineEntry(alert.id, event.ts, actor, action, detail_json(note=why))]
                )

    async def handle_readings(self, readings: Sequence[Reading]) -> None:
        """Threshold crossings open alerts (alarm) or note/cancel them (clear)."""
        for crossing in self.thresholds.observe(readings):
            reading, rule = crossing.reading, crossing.rule
            if crossing.alarm:
                device = self.registry.device(reading.device_id)
                await self.open(
                    kind=rule.kind,
                    priority=rule.priority,
                    device_id=reading.device_id,
                    resident_id=device.resident_id if device else None,
                    at=reading.ts,
                    trigger_key=None,
                    actor=f"device:{reading.device_id}",
                    detail=detail_json(metric=reading.metric, value=reading.value),
                )
                continue
            for alert in await self.store.active_alerts(device_id=reading.device_id):
                if alert.kind == rule.kind:
                    await self.store.add_timeline(
                        [
                            TimelineEntry(
                                alert.id,
                                reading.ts,
                                f"device:{reading.device_id}",
                                "reading_normal",
                                detail_json(metric=reading.metric, value=reading.value),
                            )
                        ]
                    )

    # -- human actions ------------------------------------------------------------------------
    async def accept(self, alert_id: str, responder_id: str, via: str) -> ActionOutcome:
        now = self.clock()
        actor = f"responder:{responder_id}"
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN,),
            to_state=AlertState.ACKNOWLEDGED,
            entry=TimelineEntry(alert_id, now, actor, "accepted", detail_json(via=via)),
            acked_by=responder_id,
        )
        if alert is None:
            return await self._why_not(alert_id)
        await self._tell_device(alert, FeedbackKind.RESPONDER_ASSIGNED, alert.source_seq)
        return ActionOutcome(ActionStatus.DONE, alert)

    async def decline(self, alert_id: str, responder_id: str, via: str) -> ActionOutcome:
        now = self.clock()
        entry = TimelineEntry(
            alert_id, now, f"responder:{responder_id}", "declined", detail_json(via=via)
        )
        if await self.store.escalate_now(alert_id, entry):
            self.wake_dispatcher()
            return ActionOutcome(ActionStatus.DONE, await self.store.get_alert(alert_id))
        # Not open any more: still keep the decline on the timeline when the alert exists.
        outcome = await self._why_not(alert_id)
        if outcome.alert is not None:
            await self.store.add_timeline([entry])
        return outcome

    async def acknowledge(self, alert_id: str, user: str) -> ActionOutcome:
        """The duty desk takes the alert itself."""
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN,),
            to_state=AlertState.ACKNOWLEDGED,
            entry=TimelineEntry(alert_id, self.clock(), f"user:{user}", "acknowledged"),
            acked_by=f"user:{user}",
        )
        if alert is None:
            return await self._why_not(alert_id)
        await self._tell_device(alert, FeedbackKind.RESPONDER_ASSIGNED, alert.source_seq)
        return ActionOutcome(ActionStatus.DONE, alert)

    async def resolve(
        self, alert_id: str, actor: str, outcome: Outcome, note: str | None = None
    ) -> ActionOutcome:
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN, AlertState.ACKNOWLEDGED),
            to_state=AlertState.RESOLVED,
            entry=TimelineEntry(
                alert_id,
                self.clock(),
                actor,
                "resolved",
                detail_json(outcome=outcome.value, note=note),
            ),
            outcome=outcome,
            note=note,
        )
        if alert is None:
            return await self._why_not(alert_id)
        await self._tell_device(alert, FeedbackKind.RESOLVED, alert.source_seq)
        return ActionOutcome(ActionStatus.DONE, alert)

    async def handle_reply(self, reply: Reply) -> None:
        """A reply from the responder app (MQTT ``…/responders/{id}/reply``)."""
        outcome = await self.reply(reply.responder_id, reply.alert_id, reply.action)
        if not outcome.ok:
            log.info(
                "reply %s from %s on alert %s: %s",
                reply.action,
                reply.responder_id,
                reply.alert_id,
                outcome.status,
            )

    async def reply(self, responder_id: str, alert_id: str, action: str) -> ActionOutcome:
        if action == "accept":
            return await self.accept(alert_id, responder_id, via="app")
        if action == "decline":
            return await self.decline(alert_id, responder_id, via="app")
        if action == "resolve":
            return await self.resolve(alert_id, f"responder:{responder_id}", Outcome.ASSISTED)
        if action == "arrived":
            alert = await self.store.get_alert(alert_id)
            if alert is None:
                return ActionOutcome(ActionStatus.NOT_FOUND)
            await self.store.add_timeline(
                [TimelineEntry(alert_id, self.clock(), f"responder:{responder_id}", "arrived")]
            )
            return ActionOutcome(ActionStatus.DONE, alert)
        raise ValueError(f"unknown action {action!r}")

    async def _why_not(self, alert_id: str) -> ActionOutcome:
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            return ActionOutcome(ActionStatus.NOT_FOUND)
        if alert.state is AlertState.ACKNOWLEDGED:
            return ActionOutcome(ActionStatus.TAKEN, alert)
        return ActionOutcome(ActionStatus.CLOSED, alert)

    async def _tell_device(self, alert: Alert, kind: FeedbackKind, seq: int | None) -> None:
        if alert.device_id is None:
            return
        sent = await self.feedback.send(
            Feedback(alert.device_id, kind, alert.id, alert.source, seq=seq)
        )
        await self.store.add_timeline(
            [
                TimelineEntry(
                    alert.id,
                    self.clock(),
                    "system",
                    "device_feedback",
                    detail_json(cmd=kind.value, sent=sent),
                )
            ]
        )

    # -- periodic checks ----------------------------------------------------------------------
    async def check_offline(self) -> int:
        """Open a device_offline alert for each registered device silent past its type's
        timeout (or reporting offline); returns how many alerts were opened or joined."""
        now = self.clock()
        devices = await self.store.device_presence()

        def silent(d: DevicePresence) -> bool:
            timeout = timedelta(seconds=self.settings.offline_timeout(d.type))
            return d.last_seen is not None and (not d.online or now - d.last_seen >= timeout)

        opened = 0
        back = {d.device_id for d in devices if d.last_seen is not None and not silent(d)}
        active = await self.store.list_alerts(states=ACTIVE_STATES, limit=100_000)
        for alert in active:
            if alert.kind == "device_offline" and alert.device_id in back:
                await self.store.transition(
                    alert.id,
                    from_states=(AlertState.OPEN, AlertState.ACKNOWLEDGED),
                    to_state=AlertState.CANCELLED,
                    entry=TimelineEntry(alert.id, now, "system", "back_online"),
                )
        for d in devices:
            if d.last_seen is None or not silent(d):
                continue  # never seen: not installed yet, not "offline"
            priority = Priority.P2 if d.type in SOS_DEVICES else Priority.P3
            result = await self.open(
                kind="device_offline",
                priority=priority,
                device_id=d.device_id,
                resident_id=d.resident_id,
                at=now,
                # One alert per silence: keyed by the last time the device was seen.
                trigger_key=f"offline:{d.device_id}:{d.last_seen.isoformat()}",
                actor="system",
                detail=detail_json(last_seen=d.last_seen, online=d.online),
            )
            opened += int(result.applied)
        return opened

    async def check_welfare(self) -> int:
        """Residents who live alone with no motion/door activity for ``welfare_after``."""
        now = self.clock()
        since = now - timedelta(seconds=self.settings.welfare_after)
        alone = [r for r in self.registry.residents.values() if r.lives_alone]
        if not alone:
            return 0
        last = await self.store.last_activity(ACTIVITY_EVENTS)
        has_sensor = {
            d.resident_id
            for d in self.registry.devices.values()
            if d.type in (DeviceType.MOTION_SENSOR, DeviceType.DOOR_CONTACT)
        }
        opened = 0
        for resident in alone:
            if resident.resident_id not in has_sensor:
                continue  # nothing could have seen them: no basis for a welfare check
            seen = last.get(resident.resident_id)
            if max(seen or self.started_at, self.started_at) >= since:
                continue
            result = await self.open(
                kind="welfare_check",
                priority=Priority.P2,
                device_id=None,
                resident_id=resident.resident_id,
                at=now,
                trigger_key=f"welfare:{resident.resident_id}:{seen or 'never'}",
                actor="system",
                detail=detail_json(last_activity=seen),
            )
            opened += int(result.applied)
        return opened
