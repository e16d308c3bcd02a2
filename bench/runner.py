"""The phases of ``scgw bench`` for one database backend.

1. **setup**: mosquitto from the shipped config and PostgreSQL (or a SQLite file in a temporary
   folder) unless URLs are given; the bench's devices, residents and volunteers are registered;
   the gateway starts as its own process and is waited on until ``/readyz`` says ready.
2. **idle presses**: one warm-up press, then ``presses`` SOS presses one after another, each
   timed from its publish to the first notification at the local webhook (each button belongs to
   its own resident whose volunteer's channel is ``json://127.0.0.1:PORT/<button>``, so the
   request path says which press it answers).
3. **presses under load**: telemetry at 80 % of the ingest rate while the same number of
   presses is timed (as many as fit in the load's duration).
4. **ingest**: telemetry at the full rate for ``duration`` seconds; stored rows are counted in
   the database while it runs and until every acknowledged message is stored.

Loss check: after each telemetry phase the distinct stored readings of that phase's devices
must equal what the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bench.gateway_process import GatewayProcess
from bench.loadgen import load_device_id
from bench.procstat import ProcStatError, cpu_seconds, peak_rss_bytes
from bench.report import BackendResult, Latency, Telemetry, Usage, steady_rate
from bench.services import MosquittoServer, PostgresServer, ServiceError, free_port
from bench.services.process import tail
from bench.waiting import WaitTimeout, wait_for
from bench.webhook import Receiver, Request, running_receiver
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from simulators.mqtt_client import connect_publisher

LOADED_SHARE = 0.8  # SPEC: press latency is promised while telemetry runs at 80 % of the rate
PREFIX = "scgw"
NOTIFY_TIMEOUT = 10.0  # a press with no notification after this long is "missed"
PRESS_GAP = 0.01  # presses are paced: each measures a press, not the previous one's tail
WARMUP = 1.0  # seconds of load before presses (or rate samples) count
SAMPLE_EVERY = 0.5  # stored-row counts while telemetry runs
STALL_TIMEOUT = 30.0  # waiting for the backlog: give up when no row arrived for this long
START_TIMEOUT = 60.0
# The bench's PostgreSQL is durable like production (the test suite's runs with fsync off);
# its data lives on disk, not on a RAM disk.
DURABLE_PG = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}

Say = Callable[[str], None]


class BenchError(RuntimeError):
    """The bench could not run (a service did not start, the gateway died); the message says
    why and where its log is."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    backends: tuple[str, ...]
    duration: float = 10.0
    rate: float = 15000.0
    presses: int = 200
    devices: int = 1000
    processes: int = 2
    mqtt_url: str | None = None
    db_url: str | None = None


@dataclass(frozen=True, slots=True)
class _Ids:
    """Every id the bench registers, unique per run so a given broker or database may be
    reused."""

    run: str
    processes: int
    devices: int
    presses: int

    def load_prefix(self, phase: str, process: int) -> str:
        return f"{self.run}{phase}{process}-"

    def load_devices(self, phase: str) -> list[str]:
        per = self.devices // self.processes
        return [
            load_device_id(self.load_prefix(phase, p), i)
            for p in range(self.processes)
            for i in range(per)
        ]

    def like(self, phase: str) -> str:
        return f"{self.run}{phase}%"

    def buttons(self, phase: str, count: int) -> list[str]:
        return [f"{self.run}{phase}{i:05d}" for i in range(count)]


class _Loads:
    """Telemetry generator processes (``python -m bench.loadgen``) started together."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self._procs = procs
        self.started = 0.0

    @classmethod
    async def start(
        cls, host: str, port: int, ids: _Ids, phase: str, rate: float, duration: float
    ) -> _Loads:
        per = ids.devices // ids.processes
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                "--host",
                host,
                "--port",
                str(port),
                "--prefix",
                PREFIX,
                "--id-prefix",
                ids.load_prefix(phase, p),
                "--devices",
                str(per),
                "--rate",
                str(rate / ids.processes),
                "--duration",
                str(duration),
                "--client-id",
                f"{ids.run}-load-{phase}{p}",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for p in range(ids.processes)
        ]
        loads = cls(procs)
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line.strip() != b"ready":
                await loads.abort()
                raise BenchError(f"load generator did not start: {line.decode().strip()}")
        return loads

    def go(self) -> None:
        self.started = time.perf_counter()
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")

    async def results(self) -> tuple[int, int, float, float]:
        """(published, acked by the broker, seconds, generator CPU seconds)."""
        published = acked = 0
        seconds = cpu = 0.0
        for proc in self._procs:
            assert proc.stdout is not None
            out = await proc.stdout.read()
            await proc.wait()
            result = json.loads(out.decode().strip().splitlines()[-1])
            if "error" in result:
                raise BenchError(f"load generator failed: {result['error']}")
            published += int(result["sent"])
            acked += int(result["acked"])
            seconds = max(seconds, float(result["seconds"]))
            cpu += float(result["cpu_seconds"])
        return published, acked, seconds, cpu

    async def abort(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class _Presses:
    """SOS presses timed to their first notification at the webhook."""

    def __init__(self, url: str, phones: Receiver) -> None:
        self._client = connect_publisher(url, "")
        self._waiting: dict[str, tuple[float, asyncio.Future[Request]]] = {}
        phones.on_request = self._arrived

    def _arrived(self, request: Request) -> None:
        entry = self._waiting.get(request.path.rstrip("/"))
        # Only a request that came after the press answers it (never an earlier one).
        if entry is not None and request.at >= entry[0] and not entry[1].done():
            entry[1].set_result(request)

    async def press(self, button: str, n: int) -> float | None:
        """Milliseconds from publish to the first notification, or None (missed)."""
        future: asyncio.Future[Request] = asyncio.get_running_loop().create_future()
        body = orjson.dumps({"id": f"{button}-{n}", "type": "sos"})
        t0 = time.perf_counter()
        self._waiting[f"/{button}"] = (t0, future)
        self._client.publish(f"{PREFIX}/{button}/event", body, qos=1)
        try:
            request = await asyncio.wait_for(future, NOTIFY_TIMEOUT)
        except TimeoutError:
            return None
        finally:
            del self._waiting[f"/{button}"]
        return (request.at - t0) * 1000

    async def series(self, buttons: Sequence[str], until: float | None) -> Latency:
        samples: list[float] = []
        missed = 0
        for n, button in enumerate(buttons):
            if until is not None and time.perf_counter() >= until:
                break
            ms = await self.press(button, n)
            if ms is None:
                missed += 1
            else:
                samples.append(ms)
            await asyncio.sleep(PRESS_GAP)
        return Latency.of(samples, missed)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class _Backend:
    def __init__(
        self,
        backend: str,
        options: BenchOptions,
        say: Say,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self.backend = backend
        self.options = options
        self._say = say
        self.stack = stack
        self.workdir = Path(tempfile.mkdtemp(prefix=f"scgw-bench-{backend}-"))
        self.ids = _Ids(
            run=f"b{os.getpid() % 10000:04d}{int(time.time()) % 100000:05d}",
            processes=options.processes,
            devices=options.devices,
            presses=options.presses,
        )
        self.mqtt_url = ""
        self.db_url = ""
        self.gateway: GatewayProcess | None = None
        self.store: Store | None = None
        self.keep_workdir = False  # kept when the gateway failed: its log is there

    def say(self, text: str) -> None:
        self._say(f"[{self.backend}] {text}")

    # ------------------------------------------------------------------ setup
    def start_services(self) -> None:
        if self.options.mqtt_url is None:
            self.say("starting mosquitto (config/mosquitto.conf) / 启动 mosquitto")
            # Not in the 0700 workdir: as root the broker runs as the mosquitto user.
            broker = MosquittoServer(base_dir=Path(tempfile.gettempdir()))
            self.stack.callback(broker.close)
            broker.start()
            self.mqtt_url = broker.url
        else:
            self.mqtt_url = self.options.mqtt_url
            _check_reachable(self.mqtt_url)
        if self.options.db_url is not None:
            self.db_url = self.options.db_url
        elif self.backend == "postgres":
            self.say("starting PostgreSQL / 启动 PostgreSQL")
            pg = PostgresServer(base_dir=Path(tempfile.gettempdir()), settings=DURABLE_PG)
            self.stack.callback(pg.close)
            pg.start()
            self.db_url = pg.create_database("scgw_bench")
        else:
            self.db_url = f"sqlite:///{self.workdir}/scgw-bench.db"

    async def seed(self, phones: Receiver) -> None:
        ids = self.ids
        count = self.options.presses
        buttons = [*ids.buttons("w", 1), *ids.buttons("s", count), *ids.buttons("t", count)]
        load = [*ids.load_devices("i"), *ids.load_devices("l")]
        self.say(f"registering {len(load)} sensors, {len(buttons)} buttons / 登记设备")
        store = open_store(self.db_url)
        await store.open()
        try:
            await store.upsert_responders(
                [
                    ResponderRecord(
                        f"{b}v",
                        f"志愿者 {b}",
                        "volunteer",
                        channels=(f"json://127.0.0.1:{phones.port}/{b}",),
                    )
                    for b in buttons
                ]
            )
            await store.upsert_residents(
                [ResidentRecord(f"{b}r", f"住户 {b}", responders=(f"{b}v",)) for b in buttons]
            )
            await store.upsert_devices(
                [DeviceRecord(b, DeviceType.SOS_BUTTON, resident_id=f"{b}r") for b in buttons]
                + [DeviceRecord(d, DeviceType.TEMP_HUMIDITY) for d in load]
            )
        finally:
            await store.close()

    def config_text(self, http_port: int) -> str:
        # Short session expiry: on a broker the bench did not start, the gateway's persistent
        # session must not outlive the run. The default config otherwise: load devices that
        # send faster than real sensors are flagged, never discarded.
        return (
            f'[mqtt]\nurl = "{self.mqtt_url}"\nclient_id = "{self.ids.run}-gw"\n'
            'session_expiry = "10m"\n'
            f'[database]\nurl = "{self.db_url}"\n'
            f'[http]\nbind = "127.0.0.1:{http_port}"\n'
        )

    async def start_gateway(self) -> GatewayProcess:
        config = self.workdir / "scgw.toml"
        port = free_port()
        config.write_text(self.config_text(port))
        gateway = GatewayProcess(config, self.workdir / "gateway.log", port)
        self.say("starting the gateway / 启动网关")
        gateway.start()
        self.gateway = gateway
        self.stack.callback(gateway.stop)
        try:
            await wait_for(
                lambda: gateway.ready() or gateway.exited() is not None,
                timeout=START_TIMEOUT,
                interval=0.2,
                message="gateway /readyz",
            )
        except WaitTimeout as exc:
            raise self._gateway_error(f"gateway not ready: {exc}") from None
        if gateway.exited() is not None:
            raise self._gateway_error(f"gateway exited with {gateway.exited()} at start")
        return gateway

    def _gateway_error(self, what: str) -> BenchError:
        log = self.workdir / "gateway.log"
        self.keep_workdir = True
        return BenchError(f"{what}; log {log}:\n{tail(log, 3000)}")

    # ------------------------------------------------------------------ measuring
    def usage_mark(self) -> tuple[float, float]:
        assert self.gateway is not None
        assert self.gateway.pid is not None
        try:
            return cpu_seconds(self.gateway.pid), time.perf_counter()
        except ProcStatError as exc:
            raise self._gateway_error(f"gateway gone: {exc}") from None

    def usage_since(self, mark: tuple[float, float]) -> Usage:
        assert self.gateway is not None
        assert self.gateway.pid is not None
        cpu, wall = self.usage_mark()
        return Usage(cpu - mark[0], wall - mark[1], peak_rss_bytes(self.gateway.pid))

    async def stored(self, phase: str) -> int:
        assert self.store is not None
        rows = await self.store.query(
            "SELECT count(*) FROM v_readings WHERE device_id LIKE ?", (self.ids.like(phase),)
        )
        return int(rows[0][0])

    async def distinct_stored(self, phase: str) -> int:
        assert self.store is not None
        rows = await self.store.query(
            "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, time FROM v_readings"
            " WHERE device_id LIKE ?) AS d",
            (self.ids.like(phase),),
        )
        return int(rows[0][0])

    async def telemetry(
        self, phase: str, name: str, rate: float, presses: _Presses | None
    ) -> tuple[Telemetry, Usage, Latency | None]:
        duration = self.options.duration
        parts = urlsplit(self.mqtt_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
        loads = await _Loads.start(host, port, self.ids, phase, rate, duration)
        mark = self.usage_mark()
        loads.go()
        samples: list[tuple[float, int]] = []

        async def sample() -> None:
            said = 0.0
            while True:
                n = await self.stored(phase)
                t = time.perf_counter() - loads.started
                samples.append((t, n))
                if t - said >= 2.0:
                    self.say(f"{name}: {t:4.1f} s, stored {n:,} / 已入库")
                    said = t
                await asyncio.sleep(SAMPLE_EVERY)

        latency = None
        try:
            async with asyncio.TaskGroup() as tg:
                sampler = tg.create_task(sample())
                try:
                    if presses is not None:
                        await asyncio.sleep(WARMUP)  # the load reaches its rate first
                        buttons = self.ids.buttons("t", self.options.presses)
                        latency = await presses.series(buttons, until=loads.started + duration)
                    published, acked, load_seconds, gen_cpu = await loads.results()
                    sampler.cancel()  # the rate samples are taken; draining polls on its own
                    self.say(f"{name}: broker acked {acked:,} of {published:,}; storing / 入库中")
                    done_at = await self._all_stored(phase, acked, loads.started)
                finally:
                    sampler.cancel()
        finally:
            await loads.abort()  # a no-op when they finished
        usage = self.usage_since(mark)
        stored = await self.distinct_stored(phase)
        rows = await self.stored(phase)
        result = Telemetry(
            offered_rate=rate,
            load_seconds=load_seconds,
            published=published,
            sent=acked,
            stored=stored,
            duplicates=rows - stored,
            seconds_to_store=done_at,
            steady_rate=steady_rate(samples, min(WARMUP * 2, duration / 2), load_seconds),
            generator_cpu_seconds=gen_cpu,
        )
        self.say(f"{name}: sent {acked:,}, stored {stored:,}, lost {acked - stored:,}")
        return result, usage, latency

    async def _all_stored(self, phase: str, sent: int, started: float) -> float | None:
        """Seconds from ``started`` until ``sent`` rows were stored; None when rows stopped
        arriving for STALL_TIMEOUT before that (the rest is lost)."""
        last_n, last_change = -1, time.perf_counter()
        said = 0.0
        while True:
            n = await self.stored(phase)
            now = time.perf_counter()
            if n >= sent:
                return now - started
            if n != last_n:
                last_n, last_change = n, now
            elif now - last_change > STALL_TIMEOUT:
                return None
            if now - said >= 2.0:
                self.say(f"draining: stored {n:,} of {sent:,} / 排空中")
                said = now
            # Each poll is a count(*) in the database under test: not too often.
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------------ the run
    async def run(self) -> BackendResult:
        self.stack.callback(self._cleanup)
        self.start_services()
        phones = await self.stack.enter_async_context(running_receiver())
        await self.seed(phones)
        await self.start_gateway()
        self.store = open_store(self.db_url)
        await self.store.open()
        self.stack.push_async_callback(self.store.close)
        presses = _Presses(self.mqtt_url, phones)
        self.stack.callback(presses.close)

        self.say("warm-up press / 预热呼叫")
        first = await presses.press(self.ids.buttons("w", 1)[0], 0)
        self.say(f"idle: {self.options.presses} presses / 空闲时呼叫")
        idle = await presses.series(self.ids.buttons("s", self.options.presses), until=None)
        self.say(f"idle: p50 {idle.p50 or 0:.1f} ms, p99 {idle.p99 or 0:.1f} ms")

        loaded_rate = self.options.rate * LOADED_SHARE
        self.say(f"under load: presses with telemetry at {loaded_rate:,.0f} msg/s / 负载下呼叫")
        loaded_tm, loaded_usage, loaded = await self.telemetry(
            "l", "under load", loaded_rate, presses
        )
        assert loaded is not None
        self.say(f"under load: p50 {loaded.p50 or 0:.1f} ms, p99 {loaded.p99 or 0:.1f} ms")

        self.say(f"ingest: {self.options.rate:,.0f} msg/s for {self.options.duration:g} s / 入库")
        ingest, ingest_usage, _ = await self.telemetry("i", "ingest", self.options.rate, None)
        return BackendResult(
            backend=self.backend,
            ingest=ingest,
            ingest_usage=ingest_usage,
            idle=idle,
            loaded=loaded,
            loaded_telemetry=loaded_tm,
            loaded_usage=loaded_usage,
            first_press_ms=first,
        )

    def _cleanup(self) -> None:
        if self.keep_workdir:
            self._say(f"[{self.backend}] kept {self.workdir} (gateway log) / 保留日志目录")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _check_reachable(url: str) -> None:
    """Fail at once on a broker that is not there (the gateway would wait for it)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 1883), timeout=5):
            pass
    except OSError as exc:
        raise BenchError(f"broker {url} not reachable / MQTT 代理无法连接: {exc}") from None


async def run_backend(backend: str, options: BenchOptions, say: Say) -> BackendResult:
    try:
        async with contextlib.AsyncExitStack() as stack:
            return await _Backend(backend, options, say, stack).run()
    except ServiceError as exc:
        raise BenchError(str(exc)) from None
    except ExceptionGroup as group:
        # A failure inside a phase's TaskGroup: report the failure itself, not the group.
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], BenchError | ServiceError):
            raise BenchError(str(leaves[0])) from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
