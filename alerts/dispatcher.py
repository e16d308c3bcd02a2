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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.accept import decline_link, issue_tokens, link
from alerts.announce import notify_entries
from alerts.answers import PAGE, step_answers
from alerts.channels.base import Notifier
from alerts.config import AlertsSettings
from alerts.models import Alert, DueStep, TimelineEntry, detail_json
from alerts.step import StepKnowledge, StepRunner
from alerts.store import EngineStore
from alerts.targets import Target
from devices.registry import RegistryView

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
        registry: RegistryView,
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
        self.registry = registry
        self.runner = StepRunner(registry=registry, settings=settings, notifier=notifier)
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.on_step = on_step
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due steps now (an alert just opened, or everyone declined)."""
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

    async def _knowledge(self, alert: Alert, now: datetime) -> StepKnowledge:
        declined: frozenset[str] = frozenset()
        if alert.step_index > 0:
            # Nobody can have declined before the first step went out: one round trip less
            # on the path to the first notification.
            timeline = await self.store.timeline(alert.id)
            declined = frozenset(
                e.actor.split(":", 1)[1]
                for e in timeline
                if e.action == "declined" and e.actor.startswith("responder:")
            )
        load = await self.store.responder_load(list(self.registry.responders))

        async def links(responder_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
            tokens = await issue_tokens(
                self.store, alert.id, responder_ids, now, self.settings.accept_link_ttl
            )
            return {
                rid: (link(self.public_url, t), decline_link(self.public_url, t))
                for rid, t in tokens.items()
            }

        return StepKnowledge(load=load, declined=declined, links=links)

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
        await self.registry.refresh()  # a volunteer imported a moment ago is paged
        known = await self._knowledge(alert, now)

        async def asked(targets: list[Target], desk: bool) -> None:
            # Written before the pages go out: a decline that comes back at once finds whom
            # the step asked (alerts.answers).
            responders = [t.key for t in targets if t.responder is not None]
            detail = (
                detail_json(step=index, asked=responders)
                if desk
                else detail_json(step=index, targets=[t.key for t in targets], asked=responders)
            )
            await self.store.add_timeline(
                [TimelineEntry(alert.id, now, "system", "step_desk" if desk else "step", detail)]
            )

        result = await self.runner.run(alert, step, now, known, before_page=asked)
        await self.store.add_timeline(
            [
                e
                for o in (*result.outcomes, *result.desk_outcomes)
                for e in notify_entries(alert.id, o, PAGE)
            ]
        )
        targets, reached = result.targets, result.reached
        if not any(o.reached for o in result.outcomes):
            # The desk was paged too (unless the step named it): StepRunner.run.
            await self._unreached(alert, index, now, "nobody was reached")
        next_due = now + timedelta(seconds=step.ack_timeout)
        if index < len(alert.steps) - 1:
            # Everyone this step asked declined while it was going out, or nobody could be
            # reached at all: nothing to wait for. (The last step keeps its timeout, so a
            # step that reaches nobody never spins.)
            answers = step_answers(await self.store.timeline(alert.id))
            if answers.all_answered_no:
                next_due = self.clock()
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
