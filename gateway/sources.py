"""The sources beyond the native MQTT lanes, put together for the runtime: serial lines,
the SIA DC-09 receiver and the zigbee2mqtt lane, with the registry index they share.

``Gateway._start_ingest`` builds this once the store is open, starts ``tasks()`` as
supervised tasks, adds ``lanes`` to its broker lanes and merges ``readiness()`` into /readyz.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from devices.codecs import TOPIC_CODECS
from devices.feedback import FeedbackRouter
from devices.index import AddressIndex
from gateway.config import Settings
from gateway.ingest.bus import EventBus
from gateway.ingest.sink import BatchWriter, DeviceSink, ReadingsHook
from gateway.ingest.zigbee import TopicCodecIngest
from gateway.metrics import Metrics
from gateway.mqtt.lane import MqttLane
from gateway.serial.feedback import SerialFeedback
from gateway.serial.reader import LANE as SERIAL_LANE
from gateway.serial.reader import SerialPortReader
from gateway.sia.receiver import LANE as SIA_LANE
from gateway.sia.receiver import SiaReceiver
from gateway.spool.durable import Durability
from gateway.storage.base import Store

Task = tuple[str, Callable[[], Awaitable[None]]]


class Sources:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        bus: EventBus,
        metrics: Metrics,
        feedback: FeedbackRouter,
        on_connection_change: Callable[[str, bool], None] | None = None,
        on_readings: ReadingsHook | None = None,
        durable: Durability | None = None,
    ) -> None:
        self.index = AddressIndex(store, recheck=settings.ingest.unknown_recheck)
        if durable is not None:  # the drain binds what was spooled unchecked by address
            durable.resolve_pending = self.index.registered_as
        self.lanes: list[MqttLane] = []
        self._tasks: list[Task] = []

        def sink(lane: str) -> DeviceSink:
            return DeviceSink(
                store=store,
                bus=bus,
                metrics=metrics,
                lane=lane,
                on_readings=on_readings,
                durable=durable,  # spools while the database is away
            )

        # -- serial lines -----------------------------------------------------------------
        serial_sink = sink(SERIAL_LANE)
        self.batcher = BatchWriter(
            serial_sink,
            metrics,
            max_rows=settings.database.batch_max_rows,
            max_delay=settings.database.batch_max_delay,
        )
        self.serial: dict[str, SerialPortReader] = {}
        for port in settings.serial.ports:
            reader = SerialPortReader(
                name=port.name,
                url=port.url,
                baudrate=port.baudrate,
                sink=serial_sink,
                batcher=self.batcher,
                index=self.index,
                metrics=metrics,
            )
            self.serial[port.name] = reader
            self._tasks.append((f"serial-{port.name}", reader.run))
        if self.serial:
            self._tasks.append(("serial-readings", self.batcher.run))
            feedback.register(SERIAL_LANE, SerialFeedback(self.serial, self.index))

        # -- SIA DC-09 --------------------------------------------------------------------
        self.sia: SiaReceiver | None = None
        if settings.sia.bind is not None:
            self.sia = SiaReceiver(
                settings.sia, sink=sink(SIA_LANE), index=self.index, metrics=metrics
            )
            self._tasks.append(("sia-receiver", self.sia.run))

        # -- zigbee2mqtt ------------------------------------------------------------------
        self.zigbee: TopicCodecIngest | None = None
        z2m = settings.zigbee2mqtt
        mqtt = settings.mqtt
        if z2m.enabled and mqtt.url is not None:
            codec = TOPIC_CODECS["zigbee2mqtt"](z2m.prefix)
            share = f"$share/{mqtt.shared_group}/" if mqtt.shared_group else ""
            lane = MqttLane(
                name=codec.name,
                url=mqtt.url,
                client_id=f"{mqtt.client_id}-{codec.name}",
                subscriptions=[f"{share}{topic}" for topic in codec.subscriptions()],
                receive_maximum=z2m.inflight,
                session_expiry=mqtt.session_expiry,
                keepalive=mqtt.keepalive,
                protocol=mqtt.protocol,
                on_connection_change=on_connection_change,
            )
            self.lanes.append(lane)
            self.zigbee = TopicCodecIngest(
                codec=codec, lane=lane, sink=sink(codec.name), index=self.index, metrics=metrics
            )
            self._tasks.append((f"{codec.name}-ingest", self.zigbee.run))

    async def load(self) -> None:
        await self.index.load()

    def tasks(self) -> list[Task]:
        return list(self._tasks)

    def readiness(self) -> dict[str, dict[str, object]]:
        checks: dict[str, dict[str, object]] = {}
        if self.serial:
            ports = {name: r.state.as_dict() for name, r in self.serial.items()}
            # Always ok: a vanished USB dongle silences the devices on that one bus, not the
            # gateway. Reporting not-ready would make an orchestrator drain or restart a
            # gateway that still serves every MQTT device and every other port, and a restart
            # brings no USB stick back. The port's state is here and in the metrics.
            checks["serial"] = {
                "ok": True,
                "degraded": not all(r.state.open for r in self.serial.values()),
                "ports": ports,
            }
        if self.sia is not None:
            # Not listening means no panel can deliver an alarm at all: that is not ready.
            checks["sia"] = {"ok": self.sia.state.listening, **self.sia.state.as_dict()}
        return checks
