"""Alerts while the database is away: the first notification goes out anyway.

When a P1/P2 event cannot reach the alert engine (its tables live in the database that is
down), the event is spooled to disk and this dispatcher notifies the step-1 targets of the
event's policy, resolved from the registry view's last snapshot (no database: no load, no
declines, no accept links), falling back to ``role:duty``. The notice says the system is in
degraded mode and carries the resident's name, address and phone so the responder can act.

What was sent is kept (``OutageNotice``, written to the spool after the event), so when the
database returns and the alert is created normally, it opens with this alert id, notes
"notified during database outage at …" on its timeline, and escalates from step 2 — the same
people are not notified twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from alerts.channels.base import Notice, Notifier
from alerts.config import AlertsSettings
from alerts.messages import Lang
from alerts.models import Alert, AlertState, PolicyStep, Priority
from alerts.rules import OpenAlert, classify
from alerts.step import DESK_STEP, StepKnowledge, StepRunner
from devices.models import Event
from devices.registry import RegistryView

log = logging.getLogger(__name__)

OUTAGE_PRIORITIES = frozenset({Priority.P1, Priority.P2})
# Without the database: no load (nobody is skipped as busy), no declines, no accept links.
OUTAGE_KNOWLEDGE = StepKnowledge(rewrite=lambda notice, lang: degraded(notice, lang))

DEGRADED_LINE: dict[str, str] = {
    "zh": "⚠ 系统降级运行（数据库暂不可用）：请直接电话联系居民并前往处理，本消息无接单链接。",
    "en": "⚠ Degraded mode (database unavailable): call the resident and go; "
    "this message has no accept link.",
}


@dataclass(frozen=True, slots=True)
class OutageNotice:
    """What the outage dispatcher sent for one event; kept in the spool with the event."""

    event_key: str  # the spooled event's dedup key
    alert_id: str  # the id the alert gets when it is created after the outage
    at: datetime  # when the notification went out
    step: int  # the policy step it stood for (0: the first)
    targets: tuple[str, ...]
    reached: int


def outage_alert(
    event: Event,
    decision: OpenAlert,
    alert_id: str,
    resident_id: str | None,
    steps: tuple[PolicyStep, ...],
) -> Alert:
    """The alert as it will be opened later, for rendering the notice now."""
    return Alert(
        id=alert_id,
        kind=decision.kind,
        priority=decision.priority,
        state=AlertState.OPEN,
        opened_at=event.ts,
        updated_at=event.ts,
        device_id=event.device_id,
        resident_id=resident_id,
        steps=steps,
        source=event.source,
        source_seq=event.seq,
    )


def degraded(notice: Notice, lang: Lang) -> Notice:
    """The notice with the degraded-mode line first (title, body, SMS form and app data)."""
    line = DEGRADED_LINE[lang]
    message = replace(
        notice.message,
        title=f"{notice.message.title} · {'降级模式' if lang == 'zh' else 'degraded mode'}",
        body=f"{line}\n{notice.message.body}",
        short=f"{line[:20]} {notice.message.short}",
    )
    data = dict(notice.data)
    data.update(
        title=message.title,
        body=message.body,
        short=message.short,
        degraded=True,
        accept_url=None,
        decline_url=None,
    )
    return replace(notice, message=message, data=data, accept_url=None, decline_url=None)


class OutageDispatcher:
    """Sends the first notification of spooled P1/P2 events; keeps what it sent.

    ``notify`` runs in the background (the spooled event is already acked); ``wait_for``
    lets the spool drain wait for a notification still going out before it replays the
    event, so the alert is created knowing about it.
    """

    def __init__(
        self,
        *,
        settings: AlertsSettings,
        registry: RegistryView,
        notifier: Notifier,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_notice: Callable[[OutageNotice], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.runner = StepRunner(registry=registry, settings=settings, notifier=notifier)
        self.clock = clock
        self.on_notice = on_notice  # persists the notice (the spool appends a record)
        self.notices: dict[str, OutageNotice] = {}
        self._running: dict[str, asyncio.Task[OutageNotice | None]] = {}

    def wants(self, event: Event) -> bool:
        decision = classify(event)
        return isinstance(decision, OpenAlert) and decision.priority in OUTAGE_PRIORITIES

    def start(self, event: Event) -> str | None:
        """Notify in the background (a reference is kept until it is done); returns the id
        the alert will have (the device can be told "received" with it at once). None when
        there is nothing to do: not P1/P2, or this event was notified already."""
        key = event.dedup_key
        if key is None or key in self._running or key in self.notices or not self.wants(event):
            return None
        alert_id = uuid.uuid4().hex
        task = asyncio.create_task(self.notify(event, alert_id), name=f"outage-notify-{key}")
        self._running[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return alert_id

    def _done(self, key: str, task: asyncio.Task[OutageNotice | None]) -> None:
        self._running.pop(key, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The normal dispatcher still notifies once the database is back (no notice kept).
            log.error("outage notification for %s failed", key, exc_info=exc)

    async def wait_for(self, event_key: str) -> OutageNotice | None:
        """The notice of ``event_key`` once any notification still in flight is done."""
        task = self._running.get(event_key)
        if task is not None:
            await asyncio.wait({task})
        return self.notices.get(event_key)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.wait(set(self._running.values()))

    def forget(self, event_key: str) -> None:
        self.notices.pop(event_key, None)

    async def notify(self, event: Event, alert_id: str | None = None) -> OutageNotice | None:
        decision = classify(event)
        key = event.dedup_key
        if not isinstance(decision, OpenAlert) or key is None:
            return None
        device = self.registry.device(event.device_id)
        steps = self.settings.steps_for(decision.priority)
        alert = outage_alert(
            event,
            decision,
            alert_id or uuid.uuid4().hex,
            device.resident_id if device else None,
            steps,
        )
        now = self.clock()
        step = steps[0] if steps else DESK_STEP
        if not self.runner.targets(alert, step, now, OUTAGE_KNOWLEDGE):
            step = DESK_STEP  # nobody to page in step 1 (none on duty…): the desk
        result = await self.runner.run(alert, step, now, OUTAGE_KNOWLEDGE)
        targets, reached = [*result.targets, *result.desk], result.reached
        notice = OutageNotice(key, alert.id, now, 0, tuple(t.key for t in targets), reached)
        log.error(
            "database unavailable: %s %s of %s notified directly (%d of %d reached)",
            alert.priority,
            alert.kind,
            event.device_id,
            reached,
            len(targets),
        )
        self.notices[key] = notice
        if self.on_notice is not None:
            await self.on_notice(notice)
        return notice
