"""Press → first notification latency, measured end to end.

Starts its own mosquitto and PostgreSQL (or uses SQLite), the gateway as a separate process,
and a local webhook standing in for the volunteer's phone; presses N different buttons one
after another and times each from the publish to the webhook receiving the notification.

    .venv/bin/python scripts/measure_alert_latency.py [--presses 200] [--backend postgres|sqlite]

(The full benchmark with telemetry load is ``scgw bench``'s job.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.factory import open_store
from tests.gateway.conftest import Publisher
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import running_receiver


async def main(presses: int, backend: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="scgw-latency-"))
    broker = MosquittoServer()
    broker.start()
    pg = None
    if backend == "postgres":
        pg = PostgresServer()
        pg.start()
        db_url = pg.create_database("latency")
    else:
        db_url = f"sqlite:///{workdir}/scgw.db"
    async with running_receiver() as phones:
        store = open_store(db_url)
        await store.open()
        buttons = [f"btn-{i}" for i in range(presses)]
        await store.upsert_responders(
            [
                ResponderRecord(
                    "v-1", "志愿者", "volunteer", channels=(f"json://127.0.0.1:{phones.port}/v-1",)
                )
            ]
        )
        await store.upsert_residents([ResidentRecord("r1", "张秀英", responders=("v-1",))])
        await store.upsert_devices(
            [DeviceRecord(b, DeviceType.SOS_BUTTON, resident_id="r1") for b in buttons]
        )
        await store.close()
        port = free_port()
        config = workdir / "scgw.toml"
        config.write_text(
            f'[mqtt]\nurl = "{broker.url}"\n[database]\nurl = "{db_url}"\n'
            f'[http]\nbind = "127.0.0.1:{port}"\n'
        )
        gateway = GatewayProcess(config, workdir / "gateway.log", port)
        gateway.start()
        publisher = Publisher(broker.url)
        try:
            await wait_for(gateway.ready, timeout=30, message="gateway ready")
            latencies: list[float] = []
            for i, button in enumerate(buttons):
                t0 = time.perf_counter()
                publisher.json(f"scgw/{button}/event", {"id": f"m-{i}", "type": "sos"})
                await wait_for(
                    lambda n=i + 1: len(phones.requests) >= n,
                    timeout=10,
                    interval=0.0005,
                    message=f"notification {i}",
                )
                latencies.append((time.perf_counter() - t0) * 1000)
        finally:
            publisher.close()
            gateway.stop()
    broker.close()
    if pg is not None:
        pg.close()
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{backend}: {len(latencies)} presses, press → first notification "
        f"p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms, p99 {cuts[98]:.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    asyncio.run(main(args.presses, args.backend))
