"""Supervision: a failing background task is restarted with backoff, logged and counted; a
crash loop shows on /readyz and /metrics; SIGTERM mid-stream stops cleanly (exit 0) and
nothing is lost across the restart."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devices.models import DeviceType
from gateway.metrics import Metrics
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from gateway.supervisor import TaskHealth, supervise
from tests.faults.conftest import LiveGateway, Stream, counts, fault_settings, wait_exactly_once
from tests.gateway.conftest import Publisher, register
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

DEVICES = [f"s-{i}" for i in range(6)]


class Boom(RuntimeError):
    pass


@pytest.mark.fault(
    "A background task raises, again and again",
    checks="restarted each time after a growing delay (capped); each failure logged with its "
    "traceback, counted in scgw_task_restarts_total and kept as last_error",
)
async def test_failing_task_is_restarted_with_backoff_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    health = TaskHealth("flaky")
    calls: list[float] = []
    recovered = asyncio.Event()

    async def run() -> None:
        calls.append(time.monotonic())
        assert health.running
        if len(calls) <= 5:
            raise Boom(f"failure {len(calls)}")
        recovered.set()
        await asyncio.Event().wait()  # healthy from now on

    caplog.set_level(logging.ERROR, logger="gateway.supervisor")
    task = asyncio.create_task(supervise(health, run, metrics, first_delay=0.01, max_delay=0.04))
    try:
        await asyncio.wait_for(recovered.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert health.restarts == 5
    assert health.last_error == "Boom: failure 5"
    assert metrics.value("scgw_task_restarts_total", task="flaky") == 5
    failures = [r for r in caplog.records if "task flaky failed" in r.getMessage()]
    assert len(failures) == 5
    assert all(r.exc_info is not None and r.exc_info[0] is Boom for r in failures)
    # Backoff: each gap at least the doubled delay, capped (lower bounds: never flaky).
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    for gap, delay in zip(gaps, [0.01, 0.02, 0.04, 0.04, 0.04], strict=True):
        assert gap >= delay * 0.99, (gaps, delay)


async def test_a_task_that_returns_is_restarted_too(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    health = TaskHealth("quitter")
    runs = 0
    again = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            again.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(supervise(health, run, metrics, first_delay=0.01))
    try:
        await asyncio.wait_for(again.wait(), 10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert health.restarts == 1
    assert health.last_error == "returned unexpectedly"
    assert any("task quitter returned" in r.getMessage() for r in caplog.records)


@pytest.fixture
def devices(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    publisher = Publisher(mosquitto.url, "supervision-fleet")
    yield publisher
    publisher.close()


async def _crash_loop(live: LiveGateway) -> dict[str, Any] | None:
    body = await live.ready_status(503)
    if body is None:
        return None
    task = body["checks"]["tasks"].get("bulk-path", {})
    return body if task.get("restarts", 0) >= 2 and task.get("last_error") else None


async def _telemetry_crash_loop(
    mosquitto: MosquittoServer, pg_url: str, devices: Publisher, live_gateway: Any
) -> tuple[LiveGateway, Store, Stream]:
    """Rename ``readings`` away mid-stream (every telemetry batch then fails with a SQL error,
    which is a bug to see, not a transient outage to retry), check the crash loop is visible
    and events still flow, then put the table back and wait until the gateway is ready."""
    await register(pg_url, DEVICES, DeviceType.MOTION_SENSOR)
    observer = open_store(pg_url)
    await observer.open()
    try:
        return await _crash_and_fix(observer, mosquitto, pg_url, devices, live_gateway)
    except BaseException:
        await observer.close()
        raise


async def _crash_and_fix(
    observer: Store, mosquitto: MosquittoServer, pg_url: str, devices: Publisher, live_gateway: Any
) -> tuple[LiveGateway, Store, Stream]:
    live: LiveGateway = await live_gateway(fault_settings(mosquitto.url, pg_url, free_port()))
    stream = Stream(devices, DEVICES)
    stream.publish(200)
    await wait_exactly_once(observer, stream)
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute("ALTER TABLE readings RENAME TO readings_away")
        try:
            # A steady stream, so batch after batch hits the missing table.
            stream.start(4000)
            body = await wait_for(
                lambda: _crash_loop(live), timeout=30, message="crash loop on /readyz"
            )
            task = body["checks"]["tasks"]["bulk-path"]
            assert "readings" in task["last_error"]
            restarts = await live.metric('scgw_task_restarts_total{task="bulk-path"}')
            assert restarts is not None
            assert restarts >= 2
            # The event lane is its own task: presses are still stored.
            events_before = (await counts(observer))[2]
            devices.json(f"scgw/{DEVICES[0]}/event", {"id": "during-crash", "type": "motion"})
            stream.sent_events += 1

            async def event_stored() -> bool:
                return (await counts(observer))[2] > events_before

            await wait_for(event_stored, timeout=10, message="event stored in the crash loop")
            await stream.join()
        finally:
            await admin.execute("ALTER TABLE readings_away RENAME TO readings")
    await wait_for(lambda: live.ready_status(200), timeout=60, message="ready after the fix")
    await devices.flushed(30)
    return live, observer, stream


@pytest.mark.fault(
    "Telemetry writes fail with a non-transient SQL error (table renamed away)",
    checks="crash loop visible: /readyz 503 with the task's restarts and last error, "
    "scgw_task_restarts_total grows; events still stored meanwhile; ready again after the fix "
    "and new readings stored",
)
async def test_crash_loop_is_visible_and_recovers(
    mosquitto: MosquittoServer, pg_url: str, devices: Publisher, live_gateway: Any
) -> None:
    _, observer, stream = await _telemetry_crash_loop(mosquitto, pg_url, devices, live_gateway)
    try:
        before = (await counts(observer))[0]
        stream.publish(100)

        async def new_readings_stored() -> bool:
            return (await counts(observer))[0] >= before + 90

        await wait_for(new_readings_stored, timeout=20, message="telemetry flows again")
    finally:
        await observer.close()


@pytest.mark.fault(
    "Telemetry task crashes mid-batch (crash loop), then recovers",
    checks="the readings of the batches that crashed are stored once the task recovers, "
    "without waiting for a reconnect or restart",
)
async def test_crashed_batches_are_not_lost_after_recovery(
    mosquitto: MosquittoServer, pg_url: str, devices: Publisher, live_gateway: Any
) -> None:
    _, observer, stream = await _telemetry_crash_loop(mosquitto, pg_url, devices, live_gateway)
    try:
        await wait_exactly_once(observer, stream, within=20)
    finally:
        await observer.close()


@pytest.mark.fault(
    "SIGTERM while telemetry and events stream",
    checks="the gateway stops reading, finishes what it received (stored, acked) and exits 0 "
    "within 20 s; after a restart every reading and event published is in the views exactly once",
)
async def test_sigterm_mid_stream_exits_cleanly_and_loses_nothing(
    mosquitto: MosquittoServer,
    db_url: str,
    devices: Publisher,
    observer: Store,
    gateway_process: Any,
) -> None:
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    proc: GatewayProcess = gateway_process(mosquitto.url, db_url)
    proc.start()
    await wait_for(proc.ready, timeout=60, message="gateway ready")
    stream = Stream(devices, DEVICES, rate=2000)
    stream.start(3000)

    async def mid_stream() -> bool:
        return (await counts(observer))[0] >= 500

    await wait_for(mid_stream, timeout=30, message="stream flowing")
    assert await asyncio.to_thread(proc.stop) == 0
    log = proc.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "gateway stopped" in log
    # Graceful: what had been received was finished (stored and acked) before the exit.
    assert "not yet stored" not in log, log[-3000:]
    await stream.join()
    proc.start()
    await devices.flushed(60)
    await wait_exactly_once(observer, stream)
    assert await asyncio.to_thread(proc.stop) == 0
