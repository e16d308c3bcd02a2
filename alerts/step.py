"""One escalation step, written once: who it reaches and what each person is sent.

The normal dispatcher (``alerts.dispatcher``) and the outage dispatcher (``alerts.outage``)
both run steps through :class:`StepRunner`; they differ only in what they know, which is a
:class:`StepKnowledge`: the normal one knows each responder's load, who declined, and has
accept links; the outage one knows none of that (the database is away) and marks its text
as degraded mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.channels.base import Notice, Notifier, NotifyOutcome, Recipient, make_notice
from alerts.config import AlertsSettings
from alerts.messages import Lang, local_time
from alerts.models import Alert, PolicyStep
from alerts.targets import Resolver, Target
from devices.registry import RegistryView

DESK_STEP = PolicyStep(("role:duty",), 0)

# Called with a batch's targets (and whether it is the desk fallback) before it is paged.
BeforePage = Callable[[list[Target], bool], Awaitable[None]]
# responder ids → {responder id: (accept url, decline url)}; called once per batch.
LinkMaker = Callable[[Sequence[str]], Awaitable[Mapping[str, tuple[str, str]]]]


@dataclass(frozen=True, slots=True)
class StepKnowledge:
    load: Mapping[str, int] = field(default_factory=dict)
    declined: frozenset[str] = frozenset()
    links: LinkMaker | None = None
    # Render each notice once more (the outage dispatcher's degraded-mode line).
    rewrite: Callable[[Notice, Lang], Notice] | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    targets: list[Target]
    outcomes: list[NotifyOutcome]
    desk: list[Target]  # the desk, paged because nobody in ``targets`` was reached
    desk_outcomes: list[NotifyOutcome]

    @property
    def reached(self) -> int:
        return sum(1 for o in (*self.outcomes, *self.desk_outcomes) if o.reached)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in (*self.targets, *self.desk))


def lang_of(settings: AlertsSettings) -> Lang:
    return "en" if settings.lang == "en" else "zh"


class StepRunner:
    def __init__(
        self, *, registry: RegistryView, settings: AlertsSettings, notifier: Notifier
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.notifier = notifier

    @property
    def lang(self) -> Lang:
        return lang_of(self.settings)

    def targets(
        self, alert: Alert, step: PolicyStep, now: datetime, known: StepKnowledge
    ) -> list[Target]:
        registry = self.registry
        resolver = Resolver(
            registry.responders,
            local_time=local_time,
            max_concurrent=self.settings.max_concurrent_per_responder,
        )
        return resolver.resolve(
            step,
            alert,
            registry.resident(alert.resident_id) or registry.resident_of(alert.device_id),
            registry.device(alert.device_id),
            now=now,
            load=known.load,
            declined=known.declined,
        )

    def recipient(self, target: Target) -> Recipient | None:
        """How to reach a target, in the configured language; None for a family contact
        whose resident is no longer known."""
        if target.responder is not None:
            return Recipient.for_responder(target.responder, lang=self.lang)
        if target.contact is None:
            return None
        resident_id, _, index = target.key.removeprefix("contact:").rpartition(":")
        return Recipient.for_contact(
            resident_id,
            int(index),
            target.contact,
            channel_templates=self.settings.contact_channels,
            lang=self.lang,
        )

    async def batch(
        self, alert: Alert, targets: Sequence[Target], known: StepKnowledge
    ) -> list[tuple[Recipient, Notice]]:
        """The (recipient, notice) pairs of one page: each responder with their own links."""
        registry = self.registry
        resident = registry.resident(alert.resident_id) or registry.resident_of(alert.device_id)
        device = registry.device(alert.device_id)
        responder_ids = [t.responder.responder_id for t in targets if t.responder is not None]
        links: Mapping[str, tuple[str, str]] = {}
        if known.links is not None and responder_ids:
            links = await known.links(responder_ids)
        out: list[tuple[Recipient, Notice]] = []
        for target in targets:
            recipient = self.recipient(target)
            if recipient is None:
                continue
            accept_url = decline_url = None
            if recipient.responder_id is not None and recipient.responder_id in links:
                accept_url, decline_url = links[recipient.responder_id]
            notice = make_notice(
                alert,
                resident,
                device,
                lang=recipient.lang,
                accept_url=accept_url,
                decline_url=decline_url,
            )
            if known.rewrite is not None:
                notice = known.rewrite(notice, recipient.lang)
            out.append((recipient, notice))
        return out

    async def page(
        self, alert: Alert, targets: Sequence[Target], known: StepKnowledge
    ) -> list[NotifyOutcome]:
        return await self.notifier.notify_many(await self.batch(alert, targets, known))

    async def run(
        self,
        alert: Alert,
        step: PolicyStep,
        now: datetime,
        known: StepKnowledge,
        *,
        before_page: BeforePage | None = None,
    ) -> StepResult:
        """Resolve, page, and page the desk when nobody was reached and the step did not
        name the desk already. ``before_page(targets, desk)`` runs before each batch goes
        out. The caller refreshes the registry first when it can (the outage dispatcher
        cannot: the database is away)."""
        targets = self.targets(alert, step, now, known)
        if before_page is not None:
            await before_page(targets, False)
        outcomes = await self.page(alert, targets, known)
        desk: list[Target] = []
        desk_outcomes: list[NotifyOutcome] = []
        if not any(o.reached for o in outcomes) and "role:duty" not in step.targets:
            taken = {t.key for t in targets}
            desk = [t for t in self.targets(alert, DESK_STEP, now, known) if t.key not in taken]
            if before_page is not None:
                await before_page(desk, True)
            desk_outcomes = await self.page(alert, desk, known)
        return StepResult(targets, outcomes, desk, desk_outcomes)
