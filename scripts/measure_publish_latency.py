"""Publish → PUBACK latency of the gateway's MQTT publisher on a private loopback mosquitto.

1,000 sequential publishes (each waits for its PUBACK before the next), then 1,000 started at
once (each timed from its start, so waiting for a Receive Maximum slot counts); p50/p99 in ms,
wall time, and the process CPU per publish. Any class with the publisher's interface
(``start``, ``wait_connected``, ``publish_acked``, ``stop``) can be measured, e.g. the paho
publisher this one replaced, from a checkout of an older commit::

    python scripts/measure_publish_latency.py
    git archive f041f00 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python scripts/measure_publish_latency.py \
        --impl alerts.channels.mqtt_publisher:MqttPublisher

Not a test: figures depend on the machine and its load (run it on a quiet one, several rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
from typing import Any

from bench.services.mosquitto import MosquittoServer

PAYLOAD = b'{"cmd":"alert_received","alert_id":"01HZX3K9Q4T7V2M8N6P5R1S0AB","seq":1}'
TOPIC = "scgw/btn-1-1-101/cmd"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def _one(publisher: Any) -> float:
    started = time.perf_counter()
    ack = await publisher.publish_acked(TOPIC, PAYLOAD, qos=1, timeout=30)
    if not ack.ok:
        raise RuntimeError(f"publish failed: {ack.reason}")
    return time.perf_counter() - started


async def _round(publisher: Any, count: int) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for mode in ("sequential", "concurrent"):
        cpu, wall = time.process_time(), time.perf_counter()
        if mode == "sequential":
            samples = [await _one(publisher) for _ in range(count)]
        else:
            samples = list(await asyncio.gather(*(_one(publisher) for _ in range(count))))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        p50, p99 = _percentiles(samples)
        out[mode] = (p50, p99, wall, cpu / count * 1e6)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--impl", default="gateway.mqtt.publisher:MqttPublisher")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    module, _, name = args.impl.partition(":")
    cls = getattr(importlib.import_module(module), name)
    with MosquittoServer() as broker:
        broker.start()
        publisher = cls(broker.url, name="bench")
        await publisher.start()
        try:
            if not await publisher.wait_connected(10):
                raise SystemExit("publisher did not connect")
            for _ in range(100):  # warm-up
                await _one(publisher)
            print(f"{args.impl}, {args.count} publishes per mode, loopback mosquitto")
            for index in range(args.rounds):
                for mode, (p50, p99, wall, cpu) in (await _round(publisher, args.count)).items():
                    print(
                        f"round {index + 1} {mode:>10}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                        f"wall {wall:5.2f} s  cpu {cpu:5.0f} µs/publish"
                    )
        finally:
            await publisher.stop()


if __name__ == "__main__":
    asyncio.run(main())
