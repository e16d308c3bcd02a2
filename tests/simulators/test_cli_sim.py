"""``scgw sim fleet`` and ``scgw sim responders`` as a technician runs them."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.storage.factory import open_store
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_until
from tests.simulators.conftest import ROOT, Site


def scgw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def test_synthetic_fleet_runs_for_a_while_and_writes_its_sheet(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    sheet = tmp_path / "devices.csv"
    result = scgw(
        "sim",
        "fleet",
        "--mqtt",
        mosquitto.url,
        "--devices",
        "25",
        "--zigbee-share",
        "0.5",
        "--heartbeat",
        "0.5s",
        "--duration",
        "2s",
        "--write-csv",
        str(sheet),
    )
    assert result.returncode == 0, result.stderr
    assert f"scgw import {sheet}" in result.stdout
    rows = sheet.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 26
    assert any(r.split(",")[-1] for r in rows[1:])  # some zigbee names
    final = result.stdout.strip().splitlines()[-1]
    sent = re.search(r"sent (\d+) · acked (\d+)", final)
    assert sent is not None, final
    assert int(sent[1]) >= 25 * 3  # status + heartbeats of every device
    assert sent[1] == sent[2]  # every QoS 1 publish acknowledged


def test_registry_fleet_brings_every_device_of_the_site_online(sqlite_site: Site) -> None:
    result = scgw(
        "sim",
        "fleet",
        "--mqtt",
        sqlite_site.broker.url,
        "--db",
        sqlite_site.db_url,
        "--no-events",
        "--heartbeat",
        "1s",
        "--duration",
        "3s",
    )
    assert result.returncode == 0, result.stderr
    assert "154 devices (65 own connections with a will, 18 zigbee2mqtt)" in result.stdout

    async def online() -> int:
        store = open_store(sqlite_site.db_url)
        await store.open()
        try:
            rows = await store.query("SELECT count(*) FROM v_devices WHERE online")
        finally:
            await store.close()
        return int(rows[0][0])

    count = asyncio.run(online())
    assert count == 154, sqlite_site.gateway_log()


def test_responders_answer_on_the_reply_topic(mosquitto: MosquittoServer) -> None:
    replies: list[tuple[str, dict[str, object]]] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="desk-app")
    listener.on_message = lambda _c, _u, m: replies.append((m.topic, orjson.loads(m.payload)))
    listener.connect("127.0.0.1", mosquitto.port)
    listener.subscribe("scgw/responders/+/reply", qos=1)
    listener.loop_start()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "sim",
            "responders",
            "--mqtt",
            mosquitto.url,
            "--accept-after",
            "0s..0.2s",
            "--decline-share",
            "0",
            "--duration",
            "20s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "volunteers listening on scgw/responders/+/alerts" in first
        listener.publish(
            "scgw/responders/vol-01/alerts", b'{"alert_id": "a-1", "kind": "sos"}', qos=1
        )
        wait_until(lambda: replies, timeout=10, message="a reply")
        assert replies == [
            ("scgw/responders/vol-01/reply", {"alert_id": "a-1", "action": "accept"})
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        listener.disconnect()
        listener.loop_stop()
    assert proc.returncode == 0, out
    assert "alerts received 1; answered 1 (accept 1)" in out
