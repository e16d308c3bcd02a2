"""The dispatcher: runs due escalation steps until someone accepts.

Steps are due in the database (``next_due_at``); a run claims them (``claim_due`` gives each a
claim token and a lease), notifies the step's targets, and finishes the step with the claim,
which schedules the next one after the step's ack timeout. A stale claim (the alert was
accepted, or another instance took over after our lease) finishes nothing. If this process
dies mid-step, the lease expires and the step runs again: a person may get a second message,
never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.accept import decline_link, issue_tokens, link
from alerts.channels.base import Notice, Notifier, NotifyOutcome, Recipient, make_notice
from alerts.config import AlertsSettings
from alerts.directory import Directory
from alerts.engine import EngineStore
from alerts.messages import Lang, local_time
from alerts.models import Alert, DueStep, PolicyStep, TimelineEntry, detail_json
from alerts.targets import Resolver, Target

log = logging.getLogger(__name__)

IDLE_POLL = 1.0  # upper bound on the sleep between looks at the store (other instances' work)
CLAIM_BATCH = 20


@dataclass(frozen=True, slots=True)
class StepReport:
    alert_id: str
    step_index: int
    targets: int
    reached: int
    finished: bool


class Dispatcher:
    def __init__(
        self,
        *,
        store: EngineStore,
        settings: AlertsSettings,
        directory: Directory,
        notifier: Notifier,
        public_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_step: Callable[[StepReport, float], None] | None = None,
        urgent: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        # Held while steps are claimed and sent: the gateway makes bulk telemetry wait.
        self._urgent = urgent
        self.store = store
        self.settings = settings
        self.directory = directory
        self.notifier = notifier
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.on_step = on_step
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[StepReport | None]] = set()

    def wake(self) -> None:
        """Look for due steps now (an alert just opened, or someone declined)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.run_due()
            due = await self.store.next_due_time()
            delay = IDLE_POLL
            if due is not None:
                delay = max(0.0, min(IDLE_POLL, (due - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def run_due(self) -> list[StepReport]:
        """Claim what is due and run those steps concurrently (a slow channel for one alert
        does not hold up another alert's first notification)."""
        # The claim is outside the urgent section: a poll that finds nothing (or a database
        # that is away) must not hold bulk telemetry back.
        claimed = await self.store.claim_due(
            self.clock(), lease=self.settings.claim_lease, limit=CLAIM_BATCH
        )
        if not claimed:
            return []
        with self._urgent():
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.run_step(due)) for due in claimed]
            return [t.result() for t in tasks]

    async def run_step(self, due: DueStep) -> StepReport:
        started = time.monotonic()
        alert = due.alert
        index = min(alert.step_index, len(alert.steps) - 1) if alert.steps else 0
        now = self.clock()
        if not alert.steps:
            # No policy (should not happen: one is copied on open): the desk must see it.
            await self._unreached(alert, index, now, "no escalation steps")
            done = await self.store.finish_step(
                alert.id, due.claim, next_step_index=0, next_due_at=None
            )
            return StepReport(alert.id, index, 0, 0, done)
        step = alert.steps[index]
        targets = await self._targets(alert, step, now)
        outcomes = await self._notify(alert, targets, now)
        reached = sum(1 for o in outcomes if o.reached)
        entries = [
            TimelineEntry(
                alert.id,
                now,
                "system",
                "step",
                detail_json(step=index, targets=[t.key for t in targets], reached=reached),
            )
        ]
        for outcome in outcomes:
            entries.extend(self._attempt_entries(alert, outcome))
        await self.store.add_timeline(entries)
        if reached == 0:
            await self._unreached(alert, index, now, "nobody was reached")
            if "role:duty" not in step.targets:
                # Nobody heard this step: the station desk hears it now, not a step later.
                desk = await self._targets(alert, PolicyStep(("role:duty",), 0), now)
                desk_outcomes = await self._notify(alert, desk, now)
                await self.store.add_timeline(
                    [e for o in desk_outcomes for e in self._attempt_entries(alert, o)]
                )
        next_due = now + timedelta(seconds=step.ack_timeout)
        finished = await self.store.finish_step(
            alert.id, due.claim, next_step_index=index + 1, next_due_at=next_due
        )
        report = StepReport(alert.id, index, len(targets), reached, finished)
        if self.on_step is not None:
            self.on_step(report, time.monotonic() - started)
        log.info(
            "alert %s step %d: %d of %d reached%s",
            alert.id,
            index,
            reached,
            len(targets),
            "" if finished else " (stale claim)",
        )
        return report

    async def _targets(self, alert: Alert, step: PolicyStep, now: datetime) -> list[Target]:
        directory = self.directory
        resident = directory.resident(alert.resident_id)
        device = directory.device(alert.device_id)
        declined: frozenset[str] = frozenset()
        if alert.step_index > 0 or step.targets == ("role:duty",):
            # Nobody can have declined before the first step went out: one round trip less
            # on the path to the first notification.
            timeline = await self.store.timeline(alert.id)
            declined = frozenset(
                e.actor.split(":", 1)[1]
                for e in timeline
                if e.action == "declined" and e.actor.startswith("responder:")
            )
        resolver = Resolver(
            directory.responders,
            local_time=local_time,
            max_concurrent=self.settings.max_concurrent_per_responder,
        )
        load = await self.store.responder_load(list(directory.responders))
        return resolver.resolve(
            step, alert, resident, device, now=now, load=load, declined=declined
        )

    async def _notify(
        self, alert: Alert, targets: list[Target], now: datetime
    ) -> list[NotifyOutcome]:
        lang: Lang = "en" if self.settings.lang == "en" else "zh"
        resident = self.directory.resident(alert.resident_id)
        device = self.directory.device(alert.device_id)
        responder_ids = [t.responder.responder_id for t in targets if t.responder is not None]
        tokens = await issue_tokens(
            self.store, alert.id, responder_ids, now, self.settings.accept_link_ttl
        )
        batch: list[tuple[Recipient, Notice]] = []
        for target in targets:
            if target.responder is not None:
                recipient = Recipient.for_responder(target.responder, lang=None)
                token = tokens[target.responder.responder_id]
                notice = make_notice(
                    alert,
                    resident,
                    device,
                    lang=recipient.lang,
                    accept_url=link(self.public_url, token),
                    decline_url=decline_link(self.public_url, token),
                )
            else:
                assert target.contact is not None
                assert resident is not None
                index = int(target.key.rsplit(":", 1)[1])
                recipient = Recipient.for_contact(
                    resident.resident_id,
                    index,
                    target.contact,
                    channel_templates=self.settings.contact_channels,
                    lang=lang,
                )
                notice = make_notice(alert, resident, device, lang=lang)
            batch.append((recipient, notice))
        return await self.notifier.notify_many(batch)

    @staticmethod
    def _attempt_entries(alert: Alert, outcome: NotifyOutcome) -> list[TimelineEntry]:
        at = datetime.now(UTC)
        if not outcome.attempts:
            return [
                TimelineEntry(
                    alert.id,
                    at,
                    "system",
                    "notify",
                    detail_json(recipient=outcome.recipient.key, ok=False, detail="no channel"),
                )
            ]
        return [
            TimelineEntry(
                alert.id,
                at,
                "system",
                "notify",
                detail_json(
                    recipient=outcome.recipient.key,
                    channel=d.channel,
                    ok=d.ok,
                    detail=d.detail,
                    attempt=d.attempt,
                ),
            )
            for d in outcome.attempts
        ]

    async def _unreached(self, alert: Alert, index: int, now: datetime, why: str) -> None:
        """A step that reached nobody is itself shown to the duty desk (the dashboard lists
        alerts with this timeline entry) and logged loudly."""
        log.error("alert %s (%s %s) step %d: %s", alert.id, alert.priority, alert.kind, index, why)
        await self.store.add_timeline(
            [
                TimelineEntry(
                    alert.id, now, "system", "step_unreached", detail_json(step=index, why=why)
                )
            ]
        )
