"""A site for scenarios: the example community in a database, and the gateway as a separate
process (``python -m gateway run -c FILE``) whose policy timers run ``SPEED`` times faster, on
real mosquitto — exactly what a technician's ``scgw sim scenario`` talks to."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.csv_import import import_csv
from gateway.storage.factory import open_store
from simulators.scenario_run import scaled_gateway_config
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = ROOT / "config" / "community"
SCENARIOS = ROOT / "config" / "scenarios"
# Scenario time ÷ 10: the night SOS's 60 s volunteer minute takes 6 s.
SPEED = 10.0


async def import_community(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    try:
        for name in ("responders.csv", "residents.csv", "devices.csv"):
            report = await import_csv(store, COMMUNITY / name)
            assert not report.errors, report.errors
    finally:
        await store.close()


@dataclass
class Site:
    broker: MosquittoServer
    db_url: str
    gateway: GatewayProcess

    def play(
        self, scenario: Path, *extra: str, speed: float = SPEED, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``scgw sim scenario`` as a technician runs it; its output and exit code."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "sim",
                "scenario",
                str(scenario),
                "--mqtt",
                self.broker.url,
                "--db",
                self.db_url,
                "--speed",
                f"{speed:g}",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    def gateway_log(self) -> str:
        return self.gateway.log.read_text(errors="replace")[-6000:]


async def start_site(broker: MosquittoServer, db_url: str, tmp_path: Path) -> Site:
    await import_community(db_url)
    port = free_port()
    config = tmp_path / "scgw.toml"
    config.write_text(
        f'[mqtt]\nurl = "{broker.url}"\nclient_id = "gw-scenario"\n'
        f'[database]\nurl = "{db_url}"\nbatch_max_delay = "20ms"\n'
        f'[http]\nbind = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        + scaled_gateway_config(SPEED),
        encoding="utf-8",
    )
    gateway = GatewayProcess(config, tmp_path / "gateway.log", port)
    gateway.start()
    site = Site(broker, db_url, gateway)
    try:
        await wait_for(gateway.ready, timeout=30, message="gateway ready")
    except AssertionError:
        gateway.stop()
        raise AssertionError(f"gateway did not start:\n{site.gateway_log()}") from None
    return site


@pytest.fixture
async def pg_site(mosquitto: MosquittoServer, pg_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    site = await start_site(mosquitto, pg_url, tmp_path)
    yield site
    site.gateway.stop()


@pytest.fixture
async def sqlite_site(
    mosquitto: MosquittoServer, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Site]:
    site = await start_site(mosquitto, sqlite_url, tmp_path)
    yield site
    site.gateway.stop()
