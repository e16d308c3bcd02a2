"""Follow-ups to people already paged: "assigned to you", "taken by …", resolved, cancelled,
and the one desk page of an incident.

SPEC (Alerts, People's view): everyone who was paged hears when the alert is taken by someone
else and when it is closed; an assignee hears "assigned to you"; each of these messages is on
the timeline like every page (``notify`` entries with their ``kind``). They go out in the
background (kept task references): a slow channel never holds a tap, a desk click or the
ingest path; :meth:`Announcer.drain` waits for them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from alerts.answers import PAGE, detail_of
from alerts.channels.base import Notice, NotifyOutcome, Recipient, make_notice
from alerts.messages import Lang, address_of, format_time, kind_name, render_update
from alerts.models import Alert, Incident, TimelineEntry, detail_json
from alerts.step import DESK_STEP, StepKnowledge, StepRunner
from alerts.store import AlertStore
from alerts.targets import Target

log = logging.getLogger(__name__)

# notify kinds that mean "this person was paged about the alert" (and so hears its closure)
PAGED_KINDS = frozenset({PAGE, "assigned", "incident"})


def paged_keys(timeline: Iterable[TimelineEntry]) -> list[str]:
    """Recipients some page of the alert reached, in the order first reached."""
    keys: dict[str, None] = {}
    for e in timeline:
        if e.action != "notify":
            continue
        detail = detail_of(e)
        if detail.get("ok") is True and detail.get("kind", PAGE) in PAGED_KINDS:
            keys.setdefault(str(detail.get("recipient")), None)
    return list(keys)


def notify_entries(alert_id: str, outcome: NotifyOutcome, kind: str) -> list[TimelineEntry]:
    at = datetime.now(UTC)
    key = outcome.recipient.key
    if not outcome.attempts:
        detail = detail_json(recipient=key, ok=False, detail="no channel", kind=kind)
        return [TimelineEntry(alert_id, at, "system", "notify", detail)]
    return [
        TimelineEntry(
            alert_id,
            at,
            "system",
            "notify",
            detail_json(
                recipient=key,
                channel=d.channel,
                ok=d.ok,
                detail=d.detail,
                attempt=d.attempt,
                kind=kind,
            ),
        )
        for d in outcome.attempts
    ]


class Announcer:
    def __init__(
        self,
        *,
        store: AlertStore,
        runner: StepRunner,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what the engine calls (returns at once) --------------------------------------------
    def assigned(self, alert: Alert, responder_id: str) -> None:
        self._spawn(self._assigned(alert, responder_id), f"assigned-{alert.id}")

    def taken(self, alert: Alert) -> None:
        """Everyone paged but the one who has it now."""
        self._spawn(self._follow_up(alert, "taken", exclude=alert.assignee), f"taken-{alert.id}")

    def late(self, alert: Alert, responder_id: str) -> None:
        """A late accept: that person alone hears who has it."""
        self._spawn(
            self._follow_up(alert, "taken", only=f"responder:{responder_id}"), f"late-{alert.id}"
        )

    def closed(self, alert: Alert) -> None:
        self._spawn(self._follow_up(alert, alert.state.value), f"closed-{alert.id}")

    def incident(self, incident: Incident, alerts: Sequence[Alert]) -> None:
        self._spawn(self._incident(incident, alerts), f"incident-{incident.id}")

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the work -------------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("follow-up message %s failed", task.get_name(), exc_info=exc)

    def _who(self, key: str | None) -> str | None:
        """A person's name for "taken by …": the responder's name, or the desk user."""
        if key is None:
            return None
        kind, _, ident = key.partition(":")
        if kind == "responder" and (r := self.runner.registry.responders.get(ident)):
            return r.name
        return ident or None

    def _recipient(self, alert: Alert, key: str) -> Recipient | None:
        registry = self.runner.registry
        if key.startswith("responder:"):
            responder = registry.responders.get(key.removeprefix("responder:"))
            if responder is None:
                return None
            return self.runner.recipient(Target(key, responder.name, "paged", responder=responder))
        if key.startswith("contact:"):
            resident_id, _, index = key.removeprefix("contact:").rpartition(":")
            resident = registry.resident(resident_id)
            if resident is None or not index.isdigit() or int(index) >= len(resident.contacts):
                return None
            contact = resident.contacts[int(index)]
            return self.runner.recipient(Target(key, contact.name, "paged", contact=contact))
        return None

    def _update_notice(self, alert: Alert, update: str, lang: Lang, who: str | None) -> Notice:
        registry = self.runner.registry
        resident = registry.resident(alert.resident_id) or registry.resident_of(alert.device_id)
        device = registry.device(alert.device_id)
        notice = make_notice(alert, resident, device, lang=lang)
        message = render_update(alert, resident, device, update, lang=lang, who=who)
        data = dict(notice.data)
        data.update(
            update=update,
            by=who,
            title=message.title,
            body=message.body,
            short=message.short,
        )
        return replace(notice, message=message, data=data)

    async def _send(self, alert_id: str, batch: list[tuple[Recipient, Notice]], kind: str) -> None:
        outcomes = await self.runner.notifier.notify_many(batch)
        entries = [e for o in outcomes for e in notify_entries(alert_id, o, kind)]
        await self.store.add_timeline(entries)

    async def _assigned(self, alert: Alert, responder_id: str) -> None:
        await self.runner.registry.refresh()
        key = f"responder:{responder_id}"
        recipient = self._recipient(alert, key)
        if recipient is None:
            return
        notice = self._update_notice(alert, "assigned", recipient.lang, None)
        await self._send(alert.id, [(recipient, notice)], "assigned")

    async def _follow_up(
        self, alert: Alert, update: str, *, exclude: str | None = None, only: str | None = None
    ) -> None:
        keys = [only] if only else paged_keys(await self.store.timeline(alert.id))
        who = self._who(alert.assignee) if update == "taken" else None
        batch = []
        for key in keys:
            if key == exclude:
                continue
            recipient = self._recipient(alert, key)
            if recipient is not None:
                batch.append((recipient, self._update_notice(alert, update, recipient.lang, who)))
        if batch:
            await self._send(alert.id, batch, update)

    async def _incident(self, incident: Incident, alerts: Sequence[Alert]) -> None:
        """One page to the desk: kind, place and the devices inside."""
        lead = next((a for a in alerts if a.id == incident.lead_alert_id), alerts[0])
        now = self.clock()
        desk = self.runner.targets(lead, DESK_STEP, now, StepKnowledge())
        batch = []
        for target in desk:
            recipient = self.runner.recipient(target)
            if recipient is not None:
                batch.append(
                    (recipient, self._incident_notice(incident, lead, alerts, recipient.lang))
                )
        if not batch:
            log.error("incident %s: nobody on the desk to page", incident.id)
        await self._send(lead.id, batch, "incident")

    def _incident_notice(
        self, incident: Incident, lead: Alert, alerts: Sequence[Alert], lang: Lang
    ) -> Notice:
        registry = self.runner.registry
        kind = kind_name(incident.kind, lang)
        place = incident.place or ("whole site" if lang == "en" else "全小区")
        if lang == "en":
            head = f"[INCIDENT] {kind} · {len(alerts)} devices · {place}"
        else:
            head = f"【群发事件】{kind} · {len(alerts)}台设备 · {place}"
        lines = [head]
        for a in alerts:
            device = registry.device(a.device_id)
            resident = registry.resident(a.resident_id)
            where = address_of(resident, device, lang)
            name = device.name if device and device.name else ""
            lines.append(" ".join(p for p in (f"- {a.device_id}", name, where) if p))
        lines.append(
            ("Opened: " if lang == "en" else "开始时间：") + format_time(incident.opened_at)
        )
        notice = make_notice(lead, None, None, lang=lang)
        message = replace(notice.message, title=head, body="\n".join(lines), short=head)
        data = dict(notice.data)
        data.update(
            incident_id=incident.id,
            devices=[a.device_id for a in alerts],
            title=message.title,
            body=message.body,
            short=message.short,
        )
        return replace(notice, message=message, data=data)
