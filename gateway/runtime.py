"""The gateway process: store, registry, MQTT lanes, ingest tasks and HTTP, in one TaskGroup.

Start order: HTTP first (so /healthz and /readyz answer while the database is still being
reached), then the store (retried until it opens), then the lanes and their ingest tasks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from devices.feedback import FeedbackRouter
from devices.registry import RegistryCache
from gateway.alerting import Alerting
from gateway.config import ConfigError, Settings, redact_url
from gateway.http.server import EmbeddedServer, bind_socket, make_server
from gateway.http.site import build_app
from gateway.ingest.bus import EventBus
from gateway.ingest.events import EventIngest
from gateway.ingest.telemetry import SYS_DROPPED, TelemetryIngest
from gateway.metrics import Metrics
from gateway.mqtt.lane import MqttLane
from gateway.rate_limit import DeviceRateLimiter
from gateway.sources import Sources
from gateway.spool.durable import Durability, spool_path
from gateway.spool.records import SpooledNotice
from gateway.spool.spool import Spool, SpoolState, SpoolStats
from gateway.storage.base import Store, StoreError
from gateway.storage.factory import open_store
from gateway.supervisor import TaskHealth, supervise

log = logging.getLogger(__name__)

STORE_RETRY_MAX = 10.0
SLOW_STOP = 5.0
DRAIN_TIMEOUT = 5.0  # seconds a graceful stop spends finishing what was received
PING_TIMEOUT = 1.0  # below the HTTP handler's own limit, so /readyz names the failing part


@dataclass(slots=True)
class _Parts:
    lanes: list[MqttLane] = field(default_factory=list)
    events: EventIngest | None = None
    telemetry: TelemetryIngest | None = None
    sources: Sources | None = None  # serial lines, SIA DC-09, zigbee2mqtt


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
        self.registry = RegistryCache(self.store, recheck=settings.ingest.unknown_recheck)
        self.limiter = DeviceRateLimiter(
            rate=settings.ingest.device_rate,
            burst=settings.ingest.device_burst,
            clear_after=settings.ingest.device_flag_clear,
            metrics=self.metrics,
        )
        self.parts = _Parts()
        # Stored events go to the bus (alert engine); feedback goes back to devices.
        self.bus = EventBus(self.metrics)
        self.feedback = FeedbackRouter()
        self.alerting = Alerting(settings, self.store, self.metrics, self.feedback)
        self.bus.subscribe(self.alerting.engine)
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
        self.durable = Durability(
            store=self.store,
            spool=self.spool,
            bus=self.bus,
            registry=self.registry,
            metrics=self.metrics,
            outage=self.alerting.outage if self.spool is not None else None,
            on_readings=self.alerting.on_readings,
            replies=self.alerting.engine,
            write_timeout=spool_cfg.write_timeout,
        )
        self.alerting.outage.on_notice = self.durable.record_notice
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
        consumers = [c for c in (self.parts.events, self.parts.telemetry) if c is not None]

        def drained() -> bool:
            return not any(lane.depth for lane in lanes) and not any(c.busy for c in consumers)

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
        self, tg: asyncio.TaskGroup, name: str, run: Callable[[], Awaitable[None]]
    ) -> None:
        health = self.tasks.setdefault(name, TaskHealth(name))
        self._spawn(tg, name, supervise(health, run, self.metrics))

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
        await self.registry.load()
        await self.alerting.start(lambda name, run: self._supervised(tg, name, run))
        cfg = self.settings.mqtt
        assert cfg.url is not None
        share = f"$share/{cfg.shared_group}/" if cfg.shared_group else ""
        event_lane = MqttLane(
            name="event",
            url=cfg.url,
            client_id=f"{cfg.client_id}-event",
            subscriptions=[
                f"{share}{cfg.prefix}/+/event",
                f"{share}{cfg.prefix}/responders/+/reply",
            ],
            receive_maximum=cfg.event_inflight,
            session_expiry=cfg.session_expiry,
            keepalive=cfg.keepalive,
            protocol=cfg.protocol,
            on_connection_change=self._lane_changed,
        )
        telemetry_lane = MqttLane(
            name="telemetry",
            url=cfg.url,
            client_id=f"{cfg.client_id}-telemetry",
            subscriptions=[
                f"{share}{cfg.prefix}/+/telemetry",
                f"{share}{cfg.prefix}/+/status",
                SYS_DROPPED,
            ],
            receive_maximum=cfg.telemetry_inflight,
            session_expiry=cfg.session_expiry,
            keepalive=cfg.keepalive,
            protocol=cfg.protocol,
            on_connection_change=self._lane_changed,
        )
        self.parts.lanes = [event_lane, telemetry_lane]
        self.parts.events = EventIngest(
            lane=event_lane,
            store=self.store,
            registry=self.registry,
            metrics=self.metrics,
            prefix=cfg.prefix,
            max_payload_bytes=cfg.max_payload_bytes,
            bus=self.bus,
            replies=self.alerting.engine,
            durable=self.durable,
            gate=self.alerting.urgent,
        )
        self.parts.telemetry = TelemetryIngest(
            lane=telemetry_lane,
            store=self.store,
            registry=self.registry,
            metrics=self.metrics,
            prefix=cfg.prefix,
            max_payload_bytes=cfg.max_payload_bytes,
            batch_max_rows=self.settings.database.batch_max_rows,
            batch_max_delay=self.settings.database.batch_max_delay,
            limiter=self.limiter,
            on_readings=self.alerting.on_readings,
            durable=self.durable,
            gate=self.alerting.urgent,
        )
        # While a press is stored, raised and sent, the telemetry socket is not read.
        self.alerting.urgent.on_change(lambda up: telemetry_lane.hold(up or self._draining))
        self._supervised(tg, "event-ingest", self.parts.events.run)
        self._supervised(tg, "telemetry-ingest", self.parts.telemetry.run)
        sources = self.parts.sources = Sources(
            self.settings,
            store=self.store,
            bus=self.bus,
            metrics=self.metrics,
            feedback=self.feedback,
            on_connection_change=self._lane_changed,
            on_readings=self.alerting.on_readings,
            durable=self.durable,
        )
        await sources.load()
        self.parts.lanes += sources.lanes
        for name, run in sources.tasks():
            self._supervised(tg, name, run)
        for lane in self.parts.lanes:
            await lane.start()
        self.started.set()

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
        if self.parts.sources is not None:
            checks.update(self.parts.sources.readiness())
        checks["tasks"] = {
            "ok": all(t.running for t in self.tasks.values()) and bool(self.tasks),
            **{
                t.name: {"running": t.running, "restarts": t.restarts, "last_error": t.last_error}
                for t in self.tasks.values()
            },
        }
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
