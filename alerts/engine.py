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
from typing import Protocol

from alerts.answers import step_answers
from alerts.config import AlertsSettings
from alerts.messages import format_time
from alerts.models import (
    ACTIVE_STATES,
    Alert,
    AlertState,
    Incident,
    NewAlert,
    OpenResult,
    Outcome,
    Priority,
    TimelineEntry,
    detail_json,
    responder_key,
    user_key,
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
from devices.feedback import DeviceFeedback, Feedback, FeedbackKind
from devices.models import DeviceType, Event, Reading
from devices.registry import RegistryView

log = logging.getLogger(__name__)

UNREGISTERED = "unregistered_device"  # the kind of an alarm from a device not in the registry
SOS_DEVICES = frozenset({DeviceType.SOS_BUTTON.value, DeviceType.PENDANT.value})
ACTIVITY_EVENTS = ("motion", "door_open", "door_close")


class Announcements(Protocol):
    """Follow-ups to people already paged (``alerts.announce.Announcer``); each returns at
    once and sends in the background."""

    def assigned(self, alert: Alert, responder_id: str) -> None: ...

    def taken(self, alert: Alert) -> None: ...

    def late(self, alert: Alert, responder_id: str) -> None: ...

    def closed(self, alert: Alert) -> None: ...

    def incident(self, incident: Incident, alerts: Sequence[Alert]) -> None: ...


class _Silent:
    """No follow-ups (unit tests of the engine alone)."""

    def assigned(self, alert: Alert, responder_id: str) -> None:
        pass

    def taken(self, alert: Alert) -> None:
        pass

    def late(self, alert: Alert, responder_id: str) -> None:
        pass

    def closed(self, alert: Alert) -> None:
        pass

    def incident(self, incident: Incident, alerts: Sequence[Alert]) -> None:
        pass


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
        feedback: DeviceFeedback,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wake_dispatcher: Callable[[], None] = lambda: None,
        announcer: Announcements | None = None,
    ) -> None:
        self.store = store
        self.announcer: Announcements = announcer or _Silent()
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
            await self._group(result.alert)
        return result

    # -- incidents ----------------------------------------------------------------------------
    def _place(self, alert: Alert) -> str:
        device = self.registry.device(alert.device_id)
        resident = self.registry.resident(alert.resident_id)
        return (
            (device.building if device else None) or (resident.building if resident else None) or ""
        )

    async def _group(self, alert: Alert) -> None:
        """Many devices, one kind, one place, one window: one incident (SPEC, Incidents)."""
        cfg = self.settings.incidents
        if not cfg.enabled or alert.kind in cfg.never or alert.device_id is None:
            return
        place = self._place(alert)
        since = alert.opened_at - timedelta(seconds=cfg.window)
        recent = [
            a
            for a in await self.store.list_alerts(states=ACTIVE_STATES, since=since, limit=100_000)
            if a.kind == alert.kind and a.device_id is not None and self._place(a) == place
        ]
        open_incident = any(a.incident_id is not None for a in recent)
        devices = {a.device_id for a in recent}
        if not open_incident and len(devices) < cfg.min_devices:
            return
        members = [a for a in recent if a.incident_id is None]
        if not members:
            return
        proposal = Incident(
            id=uuid.uuid4().hex,
            kind=alert.kind,
            place=place,
            priority=alert.priority,
            state="open",
            opened_at=min(a.opened_at for a in members),
            updated_at=alert.opened_at,
            lead_alert_id=min(members, key=lambda a: (a.opened_at, a.id)).id,
        )
        # A resident's life is never held back: P1 members keep their own escalation. Alarms
        # of unregistered devices have no resident and come in swarms (a misconfigured
        # batch of buttons): one page for the incident.
        hold = [a.id for a in members if a.priority is not Priority.P1 or a.kind == UNREGISTERED]
        incident, joined = await self.store.join_incident(
            proposal, [a.id for a in members], hold=hold
        )
        if not joined:
            return
        await self.store.add_timeline(
            [
                TimelineEntry(
                    a,
                    alert.opened_at,
                    "system",
                    "grouped",
                    detail_json(incident_id=incident.id, held=a in hold),
                )
                for a in joined
            ]
        )
        if incident.id == proposal.id:
            log.warning(
                "incident %s: %s from %d devices in %r",
                incident.id,
                alert.kind,
                len(devices),
                place or "the site",
            )
            self.announcer.incident(incident, await self.store.incident_alerts(incident.id))

    async def resolve_incident(
        self, incident_id: str, actor: str, outcome: Outcome, note: str | None = None
    ) -> list[Alert]:
        """Close every active alert of the incident, then the incident."""
        closed = []
        for alert in await self.store.incident_alerts(incident_id):
            if alert.active:
                done = await self.resolve(alert.id, actor, outcome, note)
                if done.alert is not None and done.ok:
                    closed.append(done.alert)
        await self.store.close_incident(incident_id, self.clock(), actor)
        return closed

    async def _after_close(self, alert: Alert) -> None:
        self.announcer.closed(alert)
        if alert.incident_id is not None:
            members = await self.store.incident_alerts(alert.incident_id)
            if not any(m.active for m in members):
                await self.store.close_incident(alert.incident_id, self.clock(), "system")

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

    async def raise_unregistered(self, event: Event) -> OpenResult:
        """An alarm from a device nobody registered (SPEC, Intake): a P1 alert marked
        "unregistered device" for the duty desk — there is no resident to page yet, so the
        policy's first step reaches nobody and the desk hears it at once. Its device id is
        the pending one a technician adopts (``device_registered`` links the resident)."""
        result = await self.open(
            kind=UNREGISTERED,
            priority=Priority.P1,
            device_id=event.device_id,
            resident_id=None,
            at=event.ts,
            trigger_key=f"event:{event.device_id}:{event.dedup_key or uuid.uuid4().hex}",
            actor=f"device:{event.device_id}",
            source=event.source,
            source_seq=event.seq,
            detail=detail_json(
                event_id=event.event_id, seq=event.seq, type=event.type.value, unregistered=True
            ),
        )
        await self._tell_device(result.alert, FeedbackKind.ALERT_RECEIVED, event.seq)
        return result

    async def device_registered(self, device_id: str, actor: str) -> list[str]:
        """A device was adopted into the registry: its open alerts learn its resident."""
        device = self.registry.device(device_id)
        if device is None or device.resident_id is None:
            return []
        return await self.store.link_resident(device_id, device.resident_id, self.clock(), actor)

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
                    await self._after_close(closed)
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
        actor = responder_key(responder_id)
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN,),
            to_state=AlertState.ACKNOWLEDGED,
            entry=TimelineEntry(alert_id, now, actor, "accepted", detail_json(via=via)),
            acked_by=actor,
        )
        if alert is None:
            outcome = await self._why_not(alert_id)
            late = outcome.alert
            if outcome.status is ActionStatus.TAKEN and late and late.assignee != actor:
                # Someone else has it: this person hears by whom (not only the server log).
                await self.store.add_timeline(
                    [TimelineEntry(alert_id, now, actor, "accept_late", detail_json(via=via))]
                )
                self.announcer.late(late, responder_id)
            return outcome
        await self._tell_device(alert, FeedbackKind.RESPONDER_ASSIGNED, alert.source_seq)
        self.announcer.taken(alert)
        return ActionOutcome(ActionStatus.DONE, alert)

    async def decline(self, alert_id: str, responder_id: str, via: str) -> ActionOutcome:
        """One person's answer: the step moves on at once only when everyone it asked has
        declined or could not be reached (alerts.answers); otherwise its timeout runs."""
        now = self.clock()
        entry = TimelineEntry(
            alert_id, now, responder_key(responder_id), "declined", detail_json(via=via)
        )
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            return ActionOutcome(ActionStatus.NOT_FOUND)
        # Written first, then read back: of two declines at once, the later read sees both.
        await self.store.add_timeline([entry])
        if alert.state is not AlertState.OPEN:
            return await self._why_not(alert_id)
        answers = step_answers(await self.store.timeline(alert_id))
        if answers.all_answered_no:
            moved = await self.store.escalate_now(
                alert_id,
                TimelineEntry(
                    alert_id,
                    self.clock(),
                    "system",
                    "escalated",
                    detail_json(
                        why="everyone asked declined or could not be reached",
                        step=answers.step,
                        declined=list(answers.declined),
                        unreached=list(answers.unreached),
                    ),
                ),
            )
            if moved:
                self.wake_dispatcher()
        return ActionOutcome(ActionStatus.DONE, await self.store.get_alert(alert_id))

    async def acknowledge(self, alert_id: str, user: str) -> ActionOutcome:
        """The duty desk takes the alert itself."""
        actor = user_key(user)
        alert = await self.store.transition(
            alert_id,
            from_states=(AlertState.OPEN,),
            to_state=AlertState.ACKNOWLEDGED,
            entry=TimelineEntry(alert_id, self.clock(), actor, "acknowledged"),
            acked_by=actor,
        )
        if alert is None:
            return await self._why_not(alert_id)
        await self._tell_device(alert, FeedbackKind.RESPONDER_ASSIGNED, alert.source_seq)
        self.announcer.taken(alert)
        return ActionOutcome(ActionStatus.DONE, alert)

    async def assign(self, alert_id: str, responder_id: str, name: str, user: str) -> ActionOutcome:
        """The desk hands the alert to a responder (usually after a phone call). The first
        acknowledgement stays as it was (an open alert is acknowledged by the desk user);
        the assignee holds it now, hears "assigned to you", and that page is on the
        timeline. NOT_FOUND / CLOSED as for the other actions."""
        before = await self.store.get_alert(alert_id)
        if before is None:
            return ActionOutcome(ActionStatus.NOT_FOUND)
        actor = user_key(user)
        alert = await self.store.transition(
            alert_id,
            from_states=ACTIVE_STATES,
            to_state=AlertState.ACKNOWLEDGED,
            entry=TimelineEntry(
                alert_id,
                self.clock(),
                actor,
                "assigned",
                detail_json(responder_id=responder_id, name=name, to=responder_key(responder_id)),
            ),
            acked_by=actor,
            assignee=responder_key(responder_id),
        )
        if alert is None:
            return await self._why_not(alert_id)
        if before.state is AlertState.OPEN:
            await self._tell_device(alert, FeedbackKind.RESPONDER_ASSIGNED, alert.source_seq)
        self.announcer.assigned(alert, responder_id)
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
        await self._after_close(alert)
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
            return await self.resolve(alert_id, responder_key(responder_id), Outcome.ASSISTED)
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
        """Queued, never awaited: a slow or absent downlink must not hold the ack of this
        event or the handling of any other (the queue records the outcome on the timeline)."""
        if alert.device_id is None:
            return
        self.feedback.tell(Feedback(alert.device_id, kind, alert.id, alert.source, seq=seq))

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
                closed = await self.store.transition(
                    alert.id,
                    from_states=(AlertState.OPEN, AlertState.ACKNOWLEDGED),
                    to_state=AlertState.CANCELLED,
                    entry=TimelineEntry(alert.id, now, "system", "back_online"),
                )
                if closed is not None:
                    await self._after_close(closed)
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
