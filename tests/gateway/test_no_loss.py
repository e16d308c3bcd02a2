"""The no-loss promise: SIGKILL the gateway process while QoS 1 telemetry and events stream,
restart it, and every reading and event is in the views exactly once."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.models import DeviceType
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from tests.gateway.conftest import Publisher, register
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

DEVICES = [f"d-{i}" for i in range(25)]
TELEMETRY = 6000
EVENTS = 300
RATE = 2500.0  # msgs/s: the stream lasts ~2.5 s, long enough to kill the gateway twice in it


@pytest.fixture
def gateway_process(
    mosquitto: MosquittoServer, db_url: str, tmp_path: Path
) -> Iterator[GatewayProcess]:
    config = tmp_path / "scgw.toml"
    http_port = free_port()
    config.write_text(
        f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "gw-kill"\n'
        f'[database]\nurl = "{db_url}"\nbatch_max_delay = "20ms"\n'
        f'[http]\nbind = "127.0.0.1:{http_port}"\n',
        encoding="utf-8",
    )
    proc = GatewayProcess(config, tmp_path / "gateway.log", http_port)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


def _stream(publisher: Publisher, done: threading.Event) -> None:
    """Telemetry and events interleaved, paced at RATE, each with a unique identity."""
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    start = time.monotonic()
    total = TELEMETRY + EVENTS
    every = total // EVENTS
    for i in range(total):
        device = DEVICES[i % len(DEVICES)]
        if i % every == 0:
            n = i // every
            publisher.json(f"scgw/{device}/event", {"id": f"ev-{n}", "type": "motion"})
        else:
            stamp = (t0 + timedelta(milliseconds=i)).isoformat()
            publisher.json(
                f"scgw/{device}/telemetry",
                {"ts": stamp, "seq": i, "metrics": {"temperature": i % 40}},
            )
        ahead = (i + 1) / RATE - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing the load generator, not waiting for a condition
    done.set()


async def _counts(store: Store) -> tuple[int, int, int, int]:
    readings = await store.query("SELECT count(*), count(DISTINCT time) FROM v_readings")
    events = await store.query("SELECT count(*), count(DISTINCT event_id) FROM v_events")
    return (int(readings[0][0]), int(readings[0][1]), int(events[0][0]), int(events[0][1]))


@pytest.mark.fault(
    "Gateway SIGKILLed twice mid-stream (6,000 readings + 300 events)",
    checks="every reading and event in the views exactly once; clean exit 0 after",
)
async def test_sigkill_during_stream_loses_nothing_and_stores_once(
    mosquitto: MosquittoServer, db_url: str, gateway_process: GatewayProcess
) -> None:
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    observer = open_store(db_url)
    await observer.open()
    publisher = Publisher(mosquitto.url, "kill-test-devices")
    try:
        gateway_process.start()
        # Let the gateway create its persistent session before the stream starts, so what is
        # published while it is dead is queued for it by the broker.
        await wait_for(
            lambda: "ingesting from" in gateway_process.log.read_text(errors="replace"),
            timeout=30,
            message="gateway started",
        )
        done = threading.Event()
        streamer = threading.Thread(target=_stream, args=(publisher, done), daemon=True)
        streamer.start()

        kills = 0
        for threshold in (TELEMETRY // 5, TELEMETRY // 2):

            async def reached(threshold: int = threshold) -> bool:
                return (await _counts(observer))[0] >= threshold

            await wait_for(reached, timeout=60, interval=0.01, message=f"{threshold} stored")
            gateway_process.kill()
            kills += 1
            gateway_process.start()
        assert kills == 2

        await asyncio.to_thread(streamer.join, 60)
        assert done.is_set()
        await publisher.flushed(60)

        expected = (TELEMETRY, TELEMETRY, EVENTS, EVENTS)

        seen: list[tuple[int, int, int, int]] = []

        async def complete() -> bool:
            counts = await _counts(observer)
            seen.append(counts)
            return counts[0] >= TELEMETRY and counts[2] >= EVENTS

        try:
            await wait_for(complete, timeout=90, interval=0.1, message="all messages stored")
        except AssertionError as exc:
            full = gateway_process.log.read_text(errors="replace")
            keep = (
                Path(os.environ.get("SCGW_TEST_KEEP_FAILURE", ""))
                if os.environ.get("SCGW_TEST_KEEP_FAILURE")
                else None
            )
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / "gateway.log").write_text(full)
                (keep / "mosquitto.log").write_text(mosquitto.log_text())
            problems = [
                line
                for line in full.splitlines()
                if "WARNING" in line or "ERROR" in line or "Error" in line
            ]
            log = "\n".join(problems[-40:]) + "\n...\n" + full[-1500:]
            raise AssertionError(f"{exc}; counts {seen[-1]}; gateway log tail:\n{log}") from None
        assert await _counts(observer) == expected
        # The last restart may still be starting when everything is stored (the stream can
        # finish before the second kill): a clean stop needs a running gateway.
        await wait_for(gateway_process.ready, timeout=60, message="gateway ready again")
        assert gateway_process.stop() == 0
    finally:
        publisher.close()
        await observer.close()
