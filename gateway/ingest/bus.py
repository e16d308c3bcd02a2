"""Where stored events go next (the alert engine), whatever source they came from.

Every source (MQTT, serial, zigbee2mqtt, DC-09) calls ``deliver`` after the durable write and
before it acknowledges the message, for new events and for redelivered duplicates alike: a
crash between storing an event and raising its alert is then repaired by the redelivery, and
handlers make the duplicate harmless (the alert engine remembers which events it applied).
"""

from __future__ import annotations

import logging
from typing import Protocol, cast

from alerts.outage import OutageNotice
from devices.models import Event
from gateway.metrics import Metrics
from gateway.storage.base import StoreError

log = logging.getLogger(__name__)


class EventHandler(Protocol):
    name: str

    async def handle_event(self, event: Event, *, duplicate: bool) -> None:
        """Act on a stored event; must be idempotent for ``duplicate=True``."""


class OutageAwareHandler(Protocol):
    name: str
    takes_outage_notice: bool

    async def handle_event(
        self, event: Event, *, duplicate: bool, notice: OutageNotice | None = None
    ) -> None:
        """As above; ``notice``: this event was already notified during a database outage."""


def _takes_notice(handler: object) -> bool:
    # A marker, not the signature (a Protocol isinstance check cannot see keyword arguments).
    return getattr(handler, "takes_outage_notice", False) is True


class EventBus:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._handlers: list[EventHandler] = []

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def deliver(
        self, event: Event, *, duplicate: bool, notice: OutageNotice | None = None
    ) -> None:
        """``notice`` (replay from the spool) goes to handlers that take it (the engine)."""
        for handler in self._handlers:
            try:
                if notice is not None and _takes_notice(handler):
                    aware = cast(OutageAwareHandler, handler)
                    await aware.handle_event(event, duplicate=duplicate, notice=notice)
                else:
                    await handler.handle_event(event, duplicate=duplicate)
            except StoreError:
                # The database is away: the caller retries the delivery (handlers are
                # idempotent) and does not ack meanwhile, so the alert is never skipped.
                raise
            except Exception:  # logged with traceback and counted; see below
                # One poisonous event must not stall every later press on this lane: the
                # event is stored, the failure is loud (log + metric), and the lane goes on.
                self._metrics.handler_errors.labels(handler=handler.name).inc()
                log.exception(
                    "%s failed on event %s of %s", handler.name, event.type, event.device_id
                )
