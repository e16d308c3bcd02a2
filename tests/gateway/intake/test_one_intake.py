"""One intake, every transport (issue 12, SPEC Intake): the same promises hold whether a press
came as native MQTT, zigbee2mqtt, a serial frame or a DC-09 report.

Real parts: mosquitto, the database (both backends), a serial line over ``socket://``, a
DC-09 TCP connection, the ``scgw import`` command as its own process, and a local webhook as
the volunteer's phone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.models import DeviceType
from devices.records import DeviceRecord
from tests.gateway.conftest import Publisher
from tests.gateway.intake.conftest import TRANSPORTS, SiteFactory, seed, sos_device
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver

FLOOD = 20_000
SENSORS = 20
ARTIFACTS = Path(os.environ.get("SCGW_ARTIFACTS", "test-artifacts"))


def record(name: str, figures: dict[str, Any]) -> None:
    """Figures for the closing note (latencies are measured here, asserted only loosely)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "intake-figures.jsonl").open("a") as out:
        out.write(json.dumps({"test": name, **figures}) + "\n")


def sensors() -> list[DeviceRecord]:
    return [
        DeviceRecord(f"th-{n}", DeviceType.TEMP_HUMIDITY, zigbee_name=f"th_{n}")
        for n in range(SENSORS)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_sos_is_paged_ahead_of_a_zigbee_flood_whatever_its_transport(
    transport: str,
    db_url: str,
    mosquitto: MosquittoServer,
    phones: Receiver,
    site_factory: SiteFactory,
) -> None:
    await seed(db_url, phones, [sos_device(t) for t in TRANSPORTS] + sensors())
    site = await site_factory(db_url)
    metrics = site.gateway.metrics

    def flood_acked() -> float:
        return metrics.value("scgw_ack_lag_seconds_count", lane="zigbee2mqtt")

    flooder = Publisher(mosquitto.url, "zigbee-flood")
    try:
        # 20,000 readings from 20 zigbee2mqtt sensors; the press goes while they flow, on its
        # own connection — for zigbee2mqtt it lands in the broker's queue among the readings.
        for n in range(FLOOD):
            flooder.json(
                f"zigbee2mqtt/th_{n % SENSORS}",
                {"temperature": 20 + (n % 50) / 10, "humidity": 40, "linkquality": 100},
            )
        await wait_for(lambda: flood_acked() > 2_000, timeout=60, message="flood under way")
        pressed = await site.press(transport)
        await wait_for(lambda: phones.to("/v-1"), timeout=30, message=f"{transport} SOS paged")
        acked_when_paged = flood_acked()
        latency_ms = (phones.to("/v-1")[0].at - pressed) * 1000
        native_ms = latency_ms
        if transport != "mqtt":
            # A native press in the same run, for the same-bound comparison.
            native = await site.press("mqtt")
            await wait_for(lambda: len(phones.to("/v-1")) >= 2, timeout=30, message="native")
            native_ms = (phones.to("/v-1")[1].at - native) * 1000
        await site.finish()
        await flooder.flushed(within=120)
    finally:
        flooder.close()
    record(
        "sos-under-zigbee-flood",
        {
            "transport": transport,
            "backend": site.gateway.store.backend,
            "press_to_page_ms": round(latency_ms, 1),
            "native_press_to_page_ms": round(native_ms, 1),
            "flood_acked_when_paged": acked_when_paged,
        },
    )
    # The press did not wait for the flood: it was paged while the readings were still being
    # stored (an ordering, not a stopwatch), within a bound no loaded machine breaks.
    assert acked_when_paged < FLOOD
    assert latency_ms < 10_000
    alerts = await site.gateway.alerting.store.list_alerts()
    assert {a.device_id for a in alerts} == {sos_device(transport).device_id, "btn-mqtt"}
    assert {a.resident_id for a in alerts} == {"r-1"}


def scgw_import(db_url: str, path: Path) -> None:
    """``scgw import FILE --db URL`` as its own process, as staff run it beside the gateway."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "import", str(path), "--db", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_button_imported_while_running_is_paged_with_its_resident(
    transport: str, db_url: str, phones: Receiver, site_factory: SiteFactory, tmp_path: Path
) -> None:
    await seed(db_url, phones, [])  # the gateway starts knowing nobody of them
    site = await site_factory(db_url)
    device = sos_device(transport, resident="r-new")
    files = {
        "responders.csv": "responder_id,name,role,channels\n"
        f"v-new,新志愿者,volunteer,json://127.0.0.1:{phones.port}/v-new\n",
        "residents.csv": "resident_id,name,building,unit,room,responders\n"
        "r-new,刘桂兰,5,2,301,v-new\n",
        "devices.csv": "device_id,type,resident_id,serial_port,serial_addr,zigbee_name,"
        "sia_account,sia_zone\n"
        f"{device.device_id},{device.type.value},r-new,{device.serial_port or ''},"
        f"{device.serial_addr or ''},{device.zigbee_name or ''},{device.sia_account or ''},"
        f"{device.sia_zone or ''}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        await asyncio.to_thread(scgw_import, db_url, tmp_path / name)
    # Pressed at once: no cache timer stands between the import and this press.
    await site.press(transport)
    await wait_for(lambda: phones.to("/v-new"), timeout=30, message="new volunteer paged")
    await site.finish()
    alerts = await site.gateway.alerting.store.list_alerts()
    assert [(a.device_id, a.resident_id) for a in alerts] == [(device.device_id, "r-new")]
    assert "刘桂兰" in phones.to("/v-new")[0].json()["message"]
    assert await site.gateway.store.pending_devices() == []
