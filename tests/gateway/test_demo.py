"""``scgw demo`` as a newcomer runs it: it starts, data flows, a press is stored, Ctrl-C stops
it cleanly."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx

from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _metric(base: str, name: str) -> float:
    try:
        text = httpx.get(f"{base}/metrics", timeout=2).text
    except httpx.TransportError:
        return 0.0
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _query(tmp_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    uri = f"file:{tmp_path / 'demo.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute(sql, params).fetchall()


def test_demo_runs_end_to_end_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "demo",
                "--http",
                f"127.0.0.1:{http_port}",
                "--mqtt-port",
                str(mqtt_port),
                "--db",
                str(tmp_path / "demo.db"),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_until(
            lambda: "Ctrl-C" in out.read_text(errors="replace"), timeout=60, message="demo banner"
        )
        wait_until(
            lambda: "token / 令牌" in out.read_text(errors="replace"), timeout=10, message="login"
        )
        banner = out.read_text()
        assert f"http://127.0.0.1:{http_port}/" in banner
        assert f"mqtt://127.0.0.1:{mqtt_port}" in banner
        assert re.search(r"user / 用户名: \S+\s+token / 令牌: \S+", banner), banner
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        wait_until(
            lambda: _metric(base, 'scgw_messages_stored_total{kind="telemetry"}') > 0,
            timeout=30,
            message="simulated readings arrive",
        )
        # The whole registry announced itself (retained status, or the zigbee bridge's
        # availability), and zigbee2mqtt-format readings are mapped to registry devices.
        wait_until(
            lambda: (
                _query(tmp_path, "SELECT count(*) FROM v_devices WHERE NOT online") == [(0,)]
                and _query(tmp_path, "SELECT count(*) FROM v_devices WHERE last_seen IS NULL")
                == [(0,)]
            ),
            timeout=30,
            message="every device online",
        )
        wait_until(
            lambda: (
                _query(
                    tmp_path,
                    "SELECT count(*) FROM v_readings r JOIN devices d ON d.device_id = r.device_id"
                    " WHERE d.zigbee_name IS NOT NULL",
                )[0][0]
                > 0
            ),
            timeout=30,
            message="zigbee2mqtt readings",
        )
        press = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "sim",
                "press",
                "btn-1-1-101",
                "--mqtt",
                f"mqtt://127.0.0.1:{mqtt_port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert press.returncode == 0, press.stderr
        event_id = re.search(r"event id ([0-9a-f]+)", press.stdout)
        assert event_id is not None, press.stdout

        def stored() -> bool:
            rows = _query(
                tmp_path, "SELECT device_id, type FROM v_events WHERE event_id = ?", event_id[1]
            )
            return rows == [("btn-1-1-101", "sos")]

        wait_until(stored, timeout=15, message="the press is stored")
        # The press raised (or, if the fleet's own random press came first, joined) an alert.
        wait_until(
            lambda: (
                _query(
                    tmp_path,
                    "SELECT priority FROM v_alerts"
                    " WHERE device_id = 'btn-1-1-101' AND kind = 'sos'",
                )
                == [("P1",)]
            ),
            timeout=15,
            message="the press is an alert in v_alerts",
        )
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        text = out.read_text()
        assert "stopped" in text
        assert "Traceback" not in text
    finally:
        if demo.poll() is None:
            demo.kill()
