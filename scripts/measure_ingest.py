"""Quick ingest measurement: QoS 1 telemetry into the database through the gateway process.

Starts its own mosquitto (the shipped config) and PostgreSQL (or SQLite), the gateway as a
separate process, and ``scgw sim load`` publishers; reports what the database holds over
time (stored, not just received) and checks nothing was lost.

    .venv/bin/python scripts/measure_ingest.py [--rate 15000] [--duration 10] \
        [--processes 3] [--backend postgres|sqlite]

(The full benchmark with alert latency under load is ``scgw bench``'s job.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.storage.factory import open_store
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.waiting import wait_for

DEVICES = 1000


async def main(rate: float, duration: float, processes: int, backend: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="scgw-ingest-"))
    broker = MosquittoServer()
    broker.start()
    pg = None
    if backend == "postgres":
        pg = PostgresServer()
        pg.start()
        db_url = pg.create_database("ingest")
    else:
        db_url = f"sqlite:///{workdir}/scgw.db"
    store = open_store(db_url)
    await store.open()
    await store.upsert_devices(
        [DeviceRecord(f"load-{i}", DeviceType.TEMP_HUMIDITY) for i in range(DEVICES)]
    )
    port = free_port()
    config = workdir / "scgw.toml"
    config.write_text(
        f'[mqtt]\nurl = "{broker.url}"\n[database]\nurl = "{db_url}"\n'
        f'[http]\nbind = "127.0.0.1:{port}"\n'
        "[ingest]\ndevice_rate = 100000\ndevice_burst = 100000\n"
    )
    gateway = GatewayProcess(config, workdir / "gateway.log", port)
    gateway.start()
    try:
        await wait_for(gateway.ready, timeout=30, message="gateway ready")

        async def stored() -> int:
            return int((await store.query("SELECT count(*) FROM v_readings"))[0][0])

        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "sim",
            "load",
            "--mqtt",
            broker.url,
            "--devices",
            str(DEVICES),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--processes",
            str(processes),
            stdout=asyncio.subprocess.PIPE,
        )
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        while load.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(load.wait(), 1.0)  # sampling interval
            samples.append((time.monotonic() - t0, await stored()))
        out = (await load.stdout.read()).decode() if load.stdout else ""
        sent = int(json.loads(out.strip().splitlines()[-1])["sent"])
        final = await wait_for(
            lambda: _all(stored, sent), timeout=300, interval=0.5, message="everything stored"
        )
        elapsed = time.monotonic() - t0
        steady = [s for s in samples if 2.0 <= s[0] <= duration]
        steady_rate = (
            (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
            if len(steady) >= 2
            else float("nan")
        )
        print(f"load generator: {out.strip()}")
        print(
            f"{backend}: sent {sent}, stored {final}, lost {sent - final}; "
            f"stored {final / elapsed:.0f} msg/s overall ({elapsed:.1f} s until all stored), "
            f"{steady_rate:.0f} msg/s while the load ran"
        )
    finally:
        gateway.stop()
        await store.close()
        broker.close()
        if pg is not None:
            pg.close()


async def _all(stored, sent: int) -> int | None:  # type: ignore[no-untyped-def]
    n = await stored()
    return n if n >= sent else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=15000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.duration, args.processes, args.backend))
