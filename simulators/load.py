"""``scgw sim load``: rate-controlled QoS 1 telemetry from many simulated devices.

Several processes share the rate so the generator is not the bottleneck; each process owns
its own devices, so (device, metric, ts) stays unique and every message is one stored row set.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from simulators.mqtt_client import connect_publisher

DRAIN_TIMEOUT = 60.0
# paho looks through its whole queue of unsent messages on every PUBACK, so a publisher that
# runs ahead of its window slows down quadratically: never queue beyond a small window.
INFLIGHT = 200
TICK = 0.005


@dataclass(frozen=True, slots=True)
class LoadOptions:
    url: str
    devices: int
    rate: float
    duration: float
    processes: int = 1
    prefix: str = "scgw"
    id_prefix: str = "load"


@dataclass(frozen=True, slots=True)
class LoadResult:
    sent: int
    acked: int
    seconds: float


def device_ids(options: LoadOptions) -> list[str]:
    return [f"{options.id_prefix}-{i}" for i in range(options.devices)]


def _worker(options: LoadOptions, index: int, out: multiprocessing.Queue[LoadResult]) -> None:
    mine = device_ids(options)[index :: options.processes]
    rate = options.rate / options.processes
    if not mine:
        out.put(LoadResult(0, 0, 0.0))
        return
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client = connect_publisher(options.url, max_inflight=INFLIGHT)
    client.on_publish = on_publish
    topics = [f"{options.prefix}/{d}/telemetry".encode() for d in mine]
    sent = 0
    last_ts = 0.0
    start = time.monotonic()
    end = start + options.duration
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate)
        while sent < due:
            with lock:
                outstanding = sent - acked
            if outstanding >= INFLIGHT:
                break
            wall = max(time.time(), last_ts + 1e-6)  # strictly increasing: unique ts per device
            last_ts = wall
            ts = datetime.fromtimestamp(wall, UTC).isoformat()
            value = 20.0 + (sent % 100) / 10
            body = orjson.dumps({"ts": ts, "seq": sent, "metrics": {"temperature": value}})
            client.publish(topics[sent % len(topics)].decode(), body, qos=1)
            sent += 1
        time.sleep(TICK)
    seconds = time.monotonic() - start
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        with lock:
            if acked >= sent:
                break
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    out.put(LoadResult(sent, acked, seconds))


def generate(options: LoadOptions) -> LoadResult:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[LoadResult] = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(options, i, out), daemon=True)
        for i in range(options.processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=options.duration + DRAIN_TIMEOUT + 30) for _ in procs]
    for p in procs:
        p.join(timeout=5)
    return LoadResult(
        sent=sum(r.sent for r in results),
        acked=sum(r.acked for r in results),
        seconds=max(r.seconds for r in results),
    )


def run_load(options: LoadOptions) -> int:
    try:
        result = generate(options)
    except OSError as exc:
        print(f"cannot reach broker {options.url}: {exc}", file=sys.stderr)
        return 1
    rate = result.sent / result.seconds if result.seconds else 0.0
    print(
        orjson.dumps(
            {
                "sent": result.sent,
                "acked": result.acked,
                "seconds": round(result.seconds, 2),
                "rate": round(rate),
            }
        ).decode()
    )
    return 0 if result.acked == result.sent else 1
