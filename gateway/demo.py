"""``scgw demo``: the whole system on one machine with nothing installed but the package.

An embedded broker, a SQLite file, the example community, a simulated fleet and the gateway
with its HTTP server, all in this process. Default ports that are taken fall back to free ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from devices.csv_import import format_report, import_csv
from gateway.config import ConfigError, load_settings
from gateway.embedded_broker import EmbeddedBroker, free_port, port_is_free
from gateway.runtime import Gateway
from gateway.storage.factory import open_store
from gateway.users import Role, UserStore, fresh_login, login_banner
from simulators.fleet import DeviceSpec, Fleet, FleetOptions
from simulators.responders import AutoResponders, ResponderOptions

log = logging.getLogger(__name__)

DEFAULT_HTTP = ("127.0.0.1", 8080)
DEFAULT_MQTT_PORT = 1883
COMMUNITY = Path(__file__).resolve().parent.parent / "config" / "community"
COMMUNITY_FILES = ("responders.csv", "residents.csv", "devices.csv")
START_TIMEOUT = 30.0
DEMO_USER = "duty"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    http: str | None
    mqtt_port: int | None
    db: Path


def _pick_port(wanted: int | None, default: int, what: str, host: str = "127.0.0.1") -> int:
    if wanted is not None:
        if not port_is_free(wanted, host):
            raise ConfigError(f"{what} port {wanted} is taken; choose another")
        return wanted
    if port_is_free(default, host):
        return default
    port = free_port(host)
    print(f"  {what}: port {default} is taken, using {port} instead")
    print(f"  {what}: 端口 {default} 已占用，改用 {port}")
    return port


async def _load_community(db_url: str) -> None:
    store = open_store(db_url)
    await store.open()
    try:
        for name in COMMUNITY_FILES:
            path = COMMUNITY / name
            if path.is_file():
                report = await import_csv(store, path)
                log.info("%s", format_report(report))
    finally:
        await store.close()


async def _fleet_devices(gateway: Gateway) -> list[DeviceSpec]:
    """The registry's devices: zigbee ones then publish as zigbee2mqtt, the rest natively."""
    return [DeviceSpec.from_record(r) for r in await gateway.store.devices()]


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> int:
    if options.http is not None:
        http_host, _, http_port_text = options.http.rpartition(":")
        if not http_port_text.isdigit():
            raise ConfigError(f"--http expects HOST:PORT, got {options.http!r}")
        http_port = _pick_port(int(http_port_text), DEFAULT_HTTP[1], "dashboard", http_host)
    else:
        http_host = DEFAULT_HTTP[0]
        http_port = _pick_port(None, DEFAULT_HTTP[1], "dashboard", http_host)
    mqtt_port = _pick_port(options.mqtt_port, DEFAULT_MQTT_PORT, "MQTT broker")
    db_url = f"sqlite:///{options.db.resolve()}"

    broker = EmbeddedBroker(mqtt_port)
    await broker.start()
    try:
        await _load_community(db_url)
        settings = load_settings(
            None,
            mqtt={
                "url": f"mqtt://127.0.0.1:{mqtt_port}",
                "protocol": "3.1.1",
                "client_id": "scgw-demo",
            },
            database={"url": db_url},
            http={
                "bind": f"{http_host}:{http_port}",
                "public_url": f"http://{http_host}:{http_port}",
            },
        )
        gateway = Gateway(settings)
        runner = asyncio.create_task(gateway.run(), name="gateway")
        started = asyncio.create_task(gateway.ingesting.wait())
        done, _ = await asyncio.wait(
            {runner, started}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if runner in done:
            started.cancel()
            await runner  # re-raises why it could not start
            return 1
        if started not in done:
            raise ConfigError("the gateway did not start within 30 s")
        # A duty-desk login for this run; both backends implement the user store.
        demo_token = await fresh_login(
            cast(UserStore, gateway.store), DEMO_USER, Role.DUTY, datetime.now(UTC)
        )

        # SOS buttons and pendants get their own connection with a will (simulators/fleet.py).
        fleet = Fleet(
            f"mqtt://127.0.0.1:{mqtt_port}",
            await _fleet_devices(gateway),
            FleetOptions(client_prefix="scgw-demo"),
        )
        await fleet.start()
        fleet_task = asyncio.create_task(fleet.run(), name="fleet")
        volunteers = AutoResponders(ResponderOptions(url=f"mqtt://127.0.0.1:{mqtt_port}"))
        await volunteers.start()
        _banner(http_host, http_port, mqtt_port, options.db, len(fleet.devices))
        print(login_banner(f"http://{http_host}:{http_port}", DEMO_USER, demo_token), flush=True)

        await stop.wait()
        print("\nstopping / 正在停止 …")
        fleet_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fleet_task
        await volunteers.stop()
        await fleet.stop()
        gateway.request_stop()
        await runner
    finally:
        await broker.stop()
    print("stopped / 已停止")
    return 0


def _banner(host: str, http_port: int, mqtt_port: int, db: Path, devices: int) -> None:
    print(
        "\n".join(
            [
                "",
                "scgw demo — Smart Community Gateway / 智慧社区网关演示",
                f"  dashboard / 值班台:  http://{host}:{http_port}/",
                f"  health / 状态:       http://{host}:{http_port}/readyz   "
                f"metrics: http://{host}:{http_port}/metrics",
                f"  MQTT broker / 消息代理: mqtt://127.0.0.1:{mqtt_port}",
                f"  database / 数据库:   {db}",
                f"  simulated devices / 模拟设备: {devices}",
                f"  try / 试一试:  scgw sim press btn-1-1-101 --mqtt mqtt://127.0.0.1:{mqtt_port}",
                "  Ctrl-C to stop / 按 Ctrl-C 停止",
                "",
            ]
        ),
        flush=True,
    )
