"""Wires the alert side into the gateway: engine, dispatcher, channels, device feedback over
MQTT, accept links, and the periodic checks — so ``runtime.py`` only plugs it in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import orjson

from alerts.accept import AcceptService, RegistryLookup
from alerts.announce import Announcer
from alerts.channels.apprise_channel import AppriseChannel
from alerts.channels.base import Notifier
from alerts.channels.mqtt_app import MqttAppChannel
from alerts.dispatcher import Dispatcher, StepReport
from alerts.engine import AlertEngine
from alerts.outage import OutageDispatcher
from alerts.store import EngineStore
from devices.feedback import Delivery, Feedback, FeedbackQueue
from devices.models import Reading
from devices.registry import RegistryView
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.mqtt.publisher import MqttPublisher
from gateway.priority import URGENT, UrgentGate
from gateway.registry import LiveRegistry
from gateway.storage.base import Store, StoreError

log = logging.getLogger(__name__)

FEEDBACK_TIMEOUT = 5.0

Supervise = Callable[[str, Callable[[], Awaitable[None]]], None]


class MqttCommandSender:
    """Device feedback on ``{prefix}/{device_id}/cmd`` (QoS 1)."""

    def __init__(self, publisher: MqttPublisher, prefix: str) -> None:
        self._publisher = publisher
        self._prefix = prefix

    async def send(self, feedback: Feedback) -> Delivery:
        body: dict[str, object] = {"cmd": feedback.kind.value, "alert_id": feedback.alert_id}
        if feedback.seq is not None:
            body["seq"] = feedback.seq
        if feedback.eta_min is not None:
            body["eta_min"] = feedback.eta_min
        topic = f"{self._prefix}/{feedback.device_id}/cmd"
        sent = await self._publisher.publish(
            topic, orjson.dumps(body), qos=1, timeout=FEEDBACK_TIMEOUT
        )
        return Delivery.SENT if sent else Delivery.LATER  # the queue retries with backoff


class Alerting:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        feedback: FeedbackQueue,
        registry: LiveRegistry,
    ) -> None:
        mqtt = settings.mqtt
        assert mqtt.url is not None
        self.settings = settings
        self.metrics = metrics
        # Both backends implement the alert half of the store too (gateway/storage/_alerts).
        self.store = cast(EngineStore, store)
        # The one registry view the whole gateway shares, fresh at the next message.
        self.registry: RegistryView = registry
        self.urgent = UrgentGate()  # the event path's priority over bulk telemetry
        self.publisher = MqttPublisher(
            mqtt.url, client_id=f"{mqtt.client_id}-out", name="out", protocol=mqtt.protocol
        )
        self.notifier = Notifier(
            [MqttAppChannel(self.publisher, prefix=mqtt.prefix), AppriseChannel()]
        )
        public_url = settings.http.public_url or f"http://{settings.http.bind}"
        self.dispatcher = Dispatcher(
            store=self.store,
            settings=settings.alerts,
            registry=self.registry,
            notifier=self.notifier,
            public_url=public_url,
            on_step=self._count_step,
            urgent=self.urgent.urgent,
        )
        # Follow-ups to people paged ("assigned to you", "taken by …", closed, incidents).
        self.announcer = Announcer(store=self.store, runner=self.dispatcher.runner)
        self.engine = AlertEngine(
            store=self.store,
            settings=settings.alerts,
            registry=self.registry,
            feedback=feedback,
            wake_dispatcher=self.dispatcher.wake,
            announcer=self.announcer,
        )
        # While the database is away, spooled P1/P2 events are notified from here (see
        # alerts/outage.py); the runtime connects what it sent to the spool.
        self.outage = OutageDispatcher(
            settings=settings.alerts, registry=self.registry, notifier=self.notifier
        )
        feedback.register("mqtt", MqttCommandSender(self.publisher, mqtt.prefix))
        self.accept = AcceptService(
            self.store, self.engine, RegistryLookup(self.store, self.registry)
        )

    async def _run_dispatcher(self) -> None:
        # Its statements go first in the SQLite writer's queue (URGENT, this task only); the
        # gate that also pauses telemetry is held only while claimed steps are sent.
        URGENT.set(True)
        await self.dispatcher.run()

    async def start(self, supervise: Supervise) -> None:
        """After the store is open: start the publisher and the tasks."""
        supervise("mqtt-publisher", self.publisher.run)
        supervise("dispatcher", self._run_dispatcher)
        cfg = self.settings.alerts
        supervise(
            "offline-check", lambda: self._every(cfg.offline_check_every, self.engine.check_offline)
        )
        supervise(
            "welfare-check", lambda: self._every(cfg.welfare_check_every, self.engine.check_welfare)
        )

    async def stop(self) -> None:
        await self.announcer.stop()
        await self.outage.stop()
        await self.publisher.stop()

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        await self.engine.handle_readings(readings)

    @staticmethod
    async def _every(seconds: float, check: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await check()
            except StoreError as exc:
                log.warning("periodic alert check failed: %s", exc)

    def _count_step(self, report: StepReport, seconds: float) -> None:
        self.metrics.alert_steps.labels(reached="yes" if report.reached else "no").inc()
        self.metrics.step_seconds.observe(seconds)
