"""SIGKILL the gateway at random points, N times in a row, while telemetry and events flow:
after every restart each reading and event is in the views exactly once.

The kill points are drawn from a seeded RNG (printed, and in the failure message): set
``SCGW_KILL_SEED`` to replay a run. A kill can land anywhere from the interpreter's start-up
to the store open, the subscribe, mid-batch or between commit and PUBACK.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from devices.models import DeviceType
from gateway.storage.base import Store
from tests.faults.conftest import Stream, counts, wait_exactly_once
from tests.gateway.conftest import Publisher, register
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

ITERATIONS = 20
PER_ITERATION = 400  # messages published per iteration (20 of them events)
RATE = 1500.0  # the stream of one iteration lasts ~0.27 s
# Each iteration kills the running gateway this long into its stream (uniform: before,
# during or after the stream's messages reach it) ...
RUNNING_WINDOW = (0.0, 0.4)
# ... and, in this share of iterations, kills the restarted one again while it starts
# (importing, opening the store, connecting, subscribing, taking the queued backlog).
STARTUP_SHARE = 0.5
STARTUP_WINDOW = (0.02, 1.5)
SEED_ENV = "SCGW_KILL_SEED"
DEVICES = [f"k-{i}" for i in range(8)]


@pytest.fixture
def devices(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    publisher = Publisher(mosquitto.url, "kill-loop-fleet")
    yield publisher
    publisher.close()


def _seed() -> int:
    configured = os.environ.get(SEED_ENV)
    return int(configured) if configured else random.SystemRandom().randrange(2**32)


@pytest.mark.slow
@pytest.mark.fault(
    f"Gateway SIGKILLed at a random point, {ITERATIONS} times in a row",
    checks="after each kill and restart: every reading and event published so far is in "
    "v_readings / v_events exactly once (seeded, seed printed)",
)
async def test_sigkill_at_random_points_keeps_exactly_once(
    mosquitto: MosquittoServer,
    db_url: str,
    devices: Publisher,
    observer: Store,
    gateway_process: Any,
) -> None:
    seed = _seed()
    print(f"kill loop seed: {seed} (replay: {SEED_ENV}={seed})")
    rng = random.Random(seed)
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    proc: GatewayProcess = gateway_process(mosquitto.url, db_url)
    proc.start()
    # The first start must create the persistent session before anything is published:
    # what a broker receives for a session that does not exist yet is not the gateway's.
    await wait_for(proc.ready, timeout=60, message="gateway ready")
    stream = Stream(devices, DEVICES, rate=RATE)
    kill_points: list[str] = []
    try:
        for i in range(ITERATIONS):
            stream.start(PER_ITERATION)
            # The fault's timing is what is under test, so these sleeps are the injection
            # points (random by design), not stand-ins for waiting on a condition.
            delay = rng.uniform(*RUNNING_WINDOW)
            await asyncio.sleep(delay)
            stored = (await counts(observer))[0]
            proc.kill()
            kill_points.append(f"#{i}: running, {delay:.3f}s into the stream ({stored} stored)")
            proc.start()
            if rng.random() < STARTUP_SHARE:
                delay = rng.uniform(*STARTUP_WINDOW)
                await asyncio.sleep(delay)
                proc.kill()
                kill_points.append(f"#{i}: starting, {delay:.3f}s after the restart")
                proc.start()
            await stream.join()
            await devices.flushed(60)
            await wait_exactly_once(observer, stream)
        print("\n".join(kill_points))  # shown with pytest -rP
        await wait_for(proc.ready, timeout=60, message="ready after the last kill")
        assert proc.stop() == 0
    except AssertionError as exc:
        raise AssertionError(
            f"seed {seed} ({SEED_ENV}={seed} to replay); kills so far:\n"
            + "\n".join(kill_points)
            + f"\n{exc}\ngateway log tail:\n{proc.log.read_text(errors='replace')[-3000:]}"
        ) from None
