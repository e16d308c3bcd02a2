"""The port from the intake to what acts on durable data (the alert side, gateway/alerting.py).

The intake makes inputs durable and then tells this side — before the source is acknowledged,
so a crash in between is repaired by the redelivery (implementations make a repeat harmless:
the engine remembers which events it applied). ``Durable`` itself knows nothing of it; the
event and bulk paths call it after a live write, and the spool drain after a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from alerts.outage import OutageNotice
from alerts.replies import Reply
from devices.models import Event, Reading


class Consequences(Protocol):
    async def event_stored(self, event: Event, *, duplicate: bool) -> None:
        """Act on an event now in the database (new, or a redelivered duplicate)."""

    async def unregistered_alarm(self, event: Event) -> None:
        """An alarm event from a device the registry does not know (it is in the pending list
        now): the duty desk must see it (SPEC, Intake)."""

    def event_spooling(self, event: Event) -> bool:
        """The database is away and ``event`` is about to be spooled: act without the
        database (notify from memory, tell the device). Must not wait. True when an outage
        notice will follow (it is kept in the spool after the event)."""

    async def event_replayed(self, event: Event, *, duplicate: bool) -> None:
        """The drain stored a spooled event: act on it, knowing what was done during the
        outage."""

    def notice_drained(self, notice: OutageNotice) -> None:
        """An outage notice's spool record was replayed: it is no longer needed."""

    async def readings_stored(self, readings: Sequence[Reading]) -> None:
        """Thresholds (high temperature …) on readings now in the database."""

    async def reply(self, reply: Reply) -> None:
        """A responder's reply from the app (accept, decline, …); idempotent."""
