"""The gateway process: store, registry, transports, the intake and HTTP, in one TaskGroup.

This is where the parts are wired, once: transports (MQTT lanes with their routers, serial
ports, the DC-09 receiver) feed the intake (gateway/intake), which makes input durable and
tells the alert side (gateway/consequences.py); device feedback leaves from its own queue.

Start order: HTTP first (so /healthz and /readyz answer while the database is still being
reached), then the store (retried until it opens), then the registry, the lanes and tasks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from devices.codecs import TopicCodec
from devices.feedback import FeedbackQueue
from devices.mqtt_json import MqttJsonCodec
from devices.zigbee2mqtt import Zigbee2MqttCodec
from gateway.alerting import Alerting
from gateway.config import ConfigError, Settings, redact_url
from gateway.consequences import AlertConsequences, FeedbackTimeline
from gateway.http.server import EmbeddedServer, bind_socket, make_server
from gateway.http.site import build_app
from gateway.intake.bulk_path import Room
from gateway.intake.durable import Durable, spool_path
from gateway.intake.intake import Intake
from gateway.intake.mqtt_router import SYS_DROPPED, MqttRouter
from gateway.metrics import Metrics
from gateway.mqtt.lane import MqttLane
from gateway.rate_limit import DeviceRateLimiter
from gateway.registry import LiveRegistry
from gateway.serial.feedback import SerialFeedback
from gateway.serial.reader import SerialPortReader
from gateway.sia.receiver import SiaReceiver
from gateway.spool.records import SpooledNotice
from gateway.spool.spool import Spool, SpoolState, SpoolStats
from gateway.storage.base import FloodFlag, Store, StoreError
from gateway.storage.factory import open_store
from gateway.supervisor import TaskHealth, supervise

log = logging.getLogger(__name__)

STORE_RETRY_MAX = 10.0
FLAGS_EVERY = 1.0
SLOW_STOP = 5.0
DRAIN_TIMEOUT = 5.0  # seconds a graceful stop spends finishing what was received
PING_TIMEOUT = 1.0  # below the HTTP handler's own limit, so /readyz names the failing part


@dataclass(slots=True)
class _Parts:
    lanes: list[MqttLane] = field(default_factory=list)
    routers: list[MqttRouter] = field(default_factory=list)
    serial: dict[str, SerialPortReader] = field(default_factory=dict)
    sia: SiaReceiver | None = None


def calm_garbage_collector() -> None:
    """Once started: move everything startup built (imported modules, pydantic and FastAPI
    models, …) out of the cyclic collector's reach, and run its young generation less often.
    Measured under 12k msg/s: full collections scanned that heap for 30–96 ms each, every few
    seconds, finding nothing (ingest objects die by reference counting) — they were the press
    latency's p99. Cycles made later are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1000)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        http: bool = True,
        http_socket: socket.socket | None = None,
    ) -> None:
        if settings.mqtt.url is None:
            raise ConfigError("config error: [mqtt] url is required for `scgw run`")
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.store: Store = open_store(settings.database.url)
        # One registry view for ingest, alerts and HTTP, fresh at the next message.
        self.registry = LiveRegistry(self.store)
        self.limiter = DeviceRateLimiter(
            rate=settings.ingest.device_rate,
            burst=settings.ingest.device_burst,
            clear_after=settings.ingest.device_flag_clear,
            metrics=self.metrics,
        )
        self.parts = _Parts()
        # Device feedback ("received", "helper on the way") leaves from a queue of its own.
        self.feedback = FeedbackQueue()
        self.alerting = Alerting(settings, self.store, self.metrics, self.feedback, self.registry)
        self.feedback.on_result = FeedbackTimeline(self.alerting.store)
        # Database outage: events and readings wait in the spool, alerts still go out.
        self.spool: Spool | None = None
        spool_cfg = settings.spool
        if spool_cfg.enabled:
            self.spool = Spool(
                spool_path(spool_cfg.dir, settings.database.url, settings.mqtt.client_id),
                max_bytes=spool_cfg.max_bytes,
                readings_share=spool_cfg.readings_share,
                on_change=self._spool_changed,
            )
        self.consequences = AlertConsequences(
            engine=self.alerting.engine,
            outage=self.alerting.outage if self.spool is not None else None,
            metrics=self.metrics,
        )
        self.durable = Durable(
            store=self.store,
            spool=self.spool,
            registry=self.registry,
            metrics=self.metrics,
            consequences=self.consequences,
            write_timeout=spool_cfg.write_timeout,
        )
        self.alerting.outage.on_notice = self.durable.record_notice
        self.intake = Intake(
            durable=self.durable,
            registry=self.registry,
            consequences=self.consequences,
            metrics=self.metrics,
            gate=self.alerting.urgent,
            batch_max_rows=settings.database.batch_max_rows,
            batch_max_delay=settings.database.batch_max_delay,
        )
        self.tasks: dict[str, TaskHealth] = {}
        self.started = asyncio.Event()
        # Set once every lane is connected and subscribed: from then on the broker keeps what
        # is published for us, even across our restarts.
        self.ingesting = asyncio.Event()
        self.store_open = False
        self._stop = asyncio.Event()
        self._draining = False
        self._http = http
        self._http_socket = http_socket
        self._server: EmbeddedServer | None = None
        self._task_refs: set[asyncio.Task[None]] = set()
        self._unsaved_flags: dict[str, FloodFlag] = {}

    # -- control ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until ``request_stop()`` (or cancellation); then stop in order."""
        sock = self._http_socket
        if self._http and sock is None:
            http = self.settings.http
            try:
                sock = bind_socket(http.host, http.port)
            except OSError as exc:
                raise ConfigError(
                    f"config error: [http] bind = {http.bind!r}: cannot listen ({exc.strerror})"
                ) from None
        watchdog: asyncio.Task[None] | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                if sock is not None:
                    app = build_app(self)  # health, accept links, /api/v1, dashboard
                    self._server = make_server(app, "", 0)
                    self._spawn(tg, "http", self._serve_http(self._server, sock))
                self._spawn(tg, "startup", self._start_ingest(tg))
                await self._stop.wait()
                await self._drain()
                if self._server is not None:
                    self._server.should_exit = True
                for task in list(self._task_refs):
                    if task.get_name() != "http":
                        task.cancel()
                watchdog = asyncio.create_task(self._report_slow_stop())
        finally:
            for lane in self.parts.lanes:
                await lane.stop()
            await self.alerting.stop()
            if self.spool is not None:
                await self.spool.close()
            await self.store.close()
            if sock is not None:
                sock.close()
            if watchdog is not None:
                watchdog.cancel()
            log.info("gateway stopped")

    async def _drain(self) -> None:
        """A graceful stop reads nothing new and finishes what was already received — stored,
        alerts raised, acked — for up to DRAIN_TIMEOUT; whatever is left stays unacked and
        the broker sends it again after the restart (nothing is lost either way)."""
        self._draining = True
        lanes = self.parts.lanes
        for lane in lanes:
            lane.hold(True)
        intake = self.intake

        def drained() -> bool:
            return not any(lane.depth for lane in lanes) and not intake.busy

        deadline = time.monotonic() + DRAIN_TIMEOUT
        # Polled: several lanes and consumers, for at most DRAIN_TIMEOUT, once per shutdown.
        while not drained() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if not drained():
            log.warning(
                "stopping with %d received message(s) not yet stored; the broker resends them",
                sum(lane.depth for lane in lanes),
            )

    async def _report_slow_stop(self) -> None:
        """A shutdown that hangs says what it waits for."""
        await asyncio.sleep(SLOW_STOP)
        waiting = sorted(t.get_name() for t in self._task_refs if not t.done())
        log.warning(
            "still stopping after %.0fs; waiting for: %s",
            SLOW_STOP,
            ", ".join(waiting) or "connections and the store to close",
        )

    def _spawn(self, tg: asyncio.TaskGroup, name: str, coro: Awaitable[None]) -> None:
        async def wrap() -> None:
            await coro

        task = tg.create_task(wrap(), name=name)
        self._task_refs.add(task)
        task.add_done_callback(self._task_refs.discard)

    def _supervised(
        self,
        tg: asyncio.TaskGroup,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        max_delay: float = 30.0,
    ) -> None:
        health = self.tasks.setdefault(name, TaskHealth(name))
        self._spawn(tg, name, supervise(health, run, self.metrics, max_delay=max_delay))

    async def _serve_http(self, server: EmbeddedServer, sock: socket.socket) -> None:
        await server.serve(sockets=[sock])

    # -- startup ----------------------------------------------------------------------------
    async def _open_store(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.store.open()
                self.store_open = True
                return
            except StoreError as exc:
                log.warning(
                    "database %s not reachable (%s); retrying in %.1fs",
                    redact_url(self.settings.database.url),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX)

    async def _start_ingest(self, tg: asyncio.TaskGroup) -> None:
        if self.spool is not None:
            # Records a previous run left are drained once the database answers; their outage
            # notices are known before any event is replayed.
            for record in await self.spool.open():
                if isinstance(record, SpooledNotice):
                    self.alerting.outage.notices[record.notice.event_key] = record.notice
            self._supervised(tg, "spool-drain", self.durable.run_drain)
        await self._open_store()
        await self._load_registry()
        await self.alerting.start(lambda name, run: self._supervised(tg, name, run))
        self._supervised(tg, "feedback", self.feedback.run)
        # Restarted fast: while it is down no press is handled (a failing input is retried a
        # few times, then left for a redelivery — gateway/intake/poison.py).
        self._supervised(tg, "event-path", self.intake.events.run, max_delay=1.0)
        self._supervised(tg, "bulk-path", self.intake.bulk.run)
        self._supervised(tg, "flood-flags", self._keep_flood_flags)
        self._mqtt_transports()
        self._serial_transports()
        self._sia_transport()
        for router in self.parts.routers:
            self._supervised(tg, f"router-{router.name}", router.run)
        for name, reader in self.parts.serial.items():
            self._supervised(tg, f"serial-{name}", reader.run)
        if self.parts.sia is not None:
            self._supervised(tg, "sia-receiver", self.parts.sia.run)
        for lane in self.parts.lanes:
            await lane.start()
        self.started.set()

    async def _keep_flood_flags(self) -> None:
        """Hand the flood flags to the database every second: every instance, and this one
        after a restart, shows the same flags (a best effort: a failed write is retried)."""
        while True:
            await asyncio.sleep(FLAGS_EVERY)
            try:
                await self.save_flood_flags()
            except StoreError as exc:
                log.warning("flood flags not saved yet: %s", exc)

    async def save_flood_flags(self) -> None:
        """Write the flags that changed since the last write (kept for a retry if it fails)."""
        for device_id, flag in self.limiter.take_changes():
            self._unsaved_flags[device_id] = FloodFlag(
                device_id, flag.since, flag.last_rejected, flag.rejected
            )
        if self._unsaved_flags:
            await self.store.save_flags(list(self._unsaved_flags.values()))
            self._unsaved_flags.clear()

    async def _load_registry(self) -> None:
        delay = 0.2
        while True:
            try:
                # v_devices.online judges silence by these: the offline check's own timeouts.
                await self.store.set_device_timeouts(self.settings.alerts.offline_after)
                await self.registry.load()
                return
            except StoreError as exc:
                log.warning("registry not readable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX)

    def _lane(self, name: str, subscriptions: list[str], receive_maximum: int) -> MqttLane:
        cfg = self.settings.mqtt
        assert cfg.url is not None
        share = f"$share/{cfg.shared_group}/" if cfg.shared_group else ""
        lane = MqttLane(
            name=name,
            url=cfg.url,
            client_id=f"{cfg.client_id}-{name}",
            subscriptions=[t if t.startswith("$SYS/") else f"{share}{t}" for t in subscriptions],
            receive_maximum=receive_maximum,
            session_expiry=cfg.session_expiry,
            keepalive=cfg.keepalive,
            protocol=cfg.protocol,
            on_connection_change=self._lane_changed,
        )
        self.parts.lanes.append(lane)
        return lane

    def _route(
        self,
        lane: MqttLane,
        codec: TopicCodec,
        *,
        room: Room,
        reply_prefix: str | None = None,
        limiter: DeviceRateLimiter | None = None,
        discard_floods: bool = False,
    ) -> None:
        self.parts.routers.append(
            MqttRouter(
                name=lane.name,
                lane=lane,
                codec=codec,
                intake=self.intake,
                metrics=self.metrics,
                room=room,
                reply_prefix=reply_prefix,
                limiter=limiter,
                discard_floods=discard_floods,
            )
        )

    def _mqtt_transports(self) -> None:
        cfg = self.settings.mqtt
        native = MqttJsonCodec(
            cfg.prefix,
            max_bytes=cfg.max_payload_bytes,
            max_clock_ahead=timedelta(seconds=self.settings.ingest.max_clock_ahead),
        )
        # Native events and telemetry on their own connections: a press is never read after
        # a telemetry backlog at the broker.
        events = self._lane(
            "event",
            [f"{cfg.prefix}/+/event", f"{cfg.prefix}/responders/+/reply"],
            cfg.event_inflight,
        )
        self._route(events, native, reply_prefix=cfg.prefix, room=Room.ENQUEUE)
        telemetry = self._lane(
            "telemetry",
            [f"{cfg.prefix}/+/telemetry", f"{cfg.prefix}/+/status", SYS_DROPPED],
            cfg.telemetry_inflight,
        )
        self._route(
            telemetry,
            native,
            limiter=self.limiter,
            discard_floods=self.settings.ingest.flood_action == "discard",
            room=Room.WAIT,
        )
        # While the event path works, this socket is not read (the broker keeps the rest).
        self.alerting.urgent.on_change(lambda up: telemetry.hold(up or self._draining))
        z2m = self.settings.zigbee2mqtt
        if z2m.enabled:
            codec = Zigbee2MqttCodec(prefix=z2m.prefix)
            lane = self._lane(codec.name, codec.subscriptions(), z2m.inflight)
            # Alarms and readings share these topics: the lane is never held and never waits
            # for room, so an alarm behind readings is still read (its in-flight window bounds
            # what it can queue).
            self._route(lane, codec, room=Room.ENQUEUE)

    def _serial_transports(self) -> None:
        for port in self.settings.serial.ports:
            self.parts.serial[port.name] = SerialPortReader(
                name=port.name,
                url=port.url,
                baudrate=port.baudrate,
                intake=self.intake,
                metrics=self.metrics,
                frame_gap=port.frame_gap,
            )
        if self.parts.serial:
            self.feedback.register("serial", SerialFeedback(self.parts.serial, self.registry))

    def _sia_transport(self) -> None:
        if self.settings.sia.bind is not None:
            self.parts.sia = SiaReceiver(
                self.settings.sia, intake=self.intake, metrics=self.metrics
            )

    def _lane_changed(self, lane: str, up: bool) -> None:
        self.metrics.connected.labels(lane=lane).set(1 if up else 0)
        lanes = self.parts.lanes
        if up and not self.ingesting.is_set() and all(x.connected for x in lanes):
            self.ingesting.set()
            log.info(
                "gateway ingesting from %s into %s",
                redact_url(self.settings.mqtt.url or ""),
                redact_url(self.settings.database.url),
            )

    # -- readiness --------------------------------------------------------------------------
    async def readiness(self) -> dict[str, dict[str, object]]:
        checks: dict[str, dict[str, object]] = {}
        lanes = self.parts.lanes
        checks["broker"] = {
            "ok": bool(lanes) and all(lane.connected for lane in lanes),
            "lanes": {
                lane.name: {
                    "connected": lane.connected,
                    "queued": lane.depth,
                    "error": lane.last_error,
                }
                for lane in lanes
            },
        }
        if not self.store_open:
            checks["database"] = {"ok": False, "error": "not open yet"}
        else:
            try:
                await asyncio.wait_for(self.store.ping(), PING_TIMEOUT)
                checks["database"] = {"ok": True, "backend": self.store.backend}
            except StoreError as exc:
                checks["database"] = {"ok": False, "error": str(exc)}
            except TimeoutError:
                checks["database"] = {"ok": False, "error": f"no answer in {PING_TIMEOUT}s"}
        if self.spool is not None:
            checks["spool"] = self._spool_check(self.spool)
        checks.update(self._source_checks())
        checks["tasks"] = {
            "ok": all(t.running for t in self.tasks.values()) and bool(self.tasks),
            **{
                t.name: {"running": t.running, "restarts": t.restarts, "last_error": t.last_error}
                for t in self.tasks.values()
            },
        }
        return checks

    def _source_checks(self) -> dict[str, dict[str, object]]:
        checks: dict[str, dict[str, object]] = {}
        serial = self.parts.serial
        if serial:
            # Always ok: a vanished USB dongle silences the devices on that one bus, not the
            # gateway. Reporting not-ready would make an orchestrator drain or restart a
            # gateway that still serves every MQTT device and every other port, and a restart
            # brings no USB stick back. The port's state is here and in the metrics.
            checks["serial"] = {
                "ok": True,
                "degraded": not all(r.state.open for r in serial.values()),
                "ports": {name: r.state.as_dict() for name, r in serial.items()},
            }
        sia = self.parts.sia
        if sia is not None:
            # Not listening means no panel can deliver an alarm at all: that is not ready.
            checks["sia"] = {"ok": sia.state.listening, **sia.state.as_dict()}
        return checks

    def _spool_check(self, spool: Spool) -> dict[str, object]:
        stats = spool.stats()
        check: dict[str, object] = {
            # Spooling is the design working (the database check says why); full is not:
            # readings are refused and wait at the broker.
            "ok": stats.state is not SpoolState.FULL,
            "state": stats.state.value,
            "records": stats.records,
            "bytes": stats.bytes,
            "max_bytes": stats.max_bytes,
            "dir": str(spool.directory),
        }
        if stats.state is SpoolState.SPOOLING:
            check["detail"] = f"spooling {stats.records} records (database unavailable)"
        elif stats.state is SpoolState.FULL:
            check["detail"] = (
                f"SPOOL FULL: {stats.bytes} of {stats.max_bytes} bytes; readings are not"
                " accepted (the broker keeps them), events still are / 缓存已满：读数暂不接收"
            )
        return check

    def _spool_changed(self, stats: SpoolStats) -> None:
        self.metrics.spool_records.set(stats.records)
        self.metrics.spool_bytes.set(stats.bytes)
        self.metrics.spool_full.set(1 if stats.state is SpoolState.FULL else 0)
