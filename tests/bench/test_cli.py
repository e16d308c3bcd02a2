"""``scgw bench`` end to end: short real runs (own mosquitto and PostgreSQL; given broker and
SQLite file), and every bad argument rejected with exit 2 and a message.

Speed is not asserted here: the figures live in the bench's output. Runs are short and at a
low offered rate so they finish quickly on a 2-core CI machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port

SHORT = ["--duration", "2", "--rate", "800", "--presses", "8", "--devices", "40"]
RUN_TIMEOUT = 180


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "bench", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def _check_run(data: dict[str, Any], backend: str) -> None:
    for key in ("ingest_msgs_per_s", "sent", "stored", "lost", "alert_latency_ms"):
        assert key in data, key
    assert data["backend"] == backend
    assert data["ok"] is True, data["problems"]
    assert data["sent"] > 0
    assert data["stored"] == data["sent"]
    assert data["lost"] == 0
    assert data["ingest_msgs_per_s"] > 0
    run = data["backends"][backend]
    for phase in ("ingest", "under_load"):
        assert run[phase]["stored"] == run[phase]["sent"] > 0
        assert run[phase]["duplicates"] == 0
        assert run[phase]["broker_unacked"] == 0
    # the headline latency is the one under telemetry load; idle is reported too
    assert data["alert_latency_ms"] == run["alert_latency_ms"]
    for name in ("alert_latency_ms", "alert_latency_idle_ms"):
        lat = run[name]
        assert lat["n"] >= 1
        assert lat["missed"] == 0
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert run["alert_latency_idle_ms"]["n"] == 8
    for usage in ("ingest_gateway", "under_load_gateway"):
        assert run[usage]["cpu_seconds"] > 0
        assert run[usage]["peak_rss_mb"] > 10


@pytest.mark.postgres
@pytest.mark.mqtt
def test_postgres_run_starts_its_own_services() -> None:
    done = _bench("--json", "--backend", "postgres", *SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    _check_run(data, "postgres")
    assert set(data["backends"]) == {"postgres"}
    # progress on stderr names the phases
    for phase in ("starting PostgreSQL", "starting mosquitto", "idle", "under load", "ingest"):
        assert phase in done.stderr


@pytest.mark.mqtt
def test_sqlite_run_on_a_given_broker_and_database_prints_the_table(
    mosquitto: MosquittoServer, sqlite_url: str
) -> None:
    done = _bench("--mqtt", mosquitto.url, "--db", sqlite_url, *SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting mosquitto" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["sqlite"]
    assert any(line.startswith("lost / 丢失") and line.split()[-1] == "0" for line in lines)
    assert any("press→notify under load" in line for line in lines)
    assert lines[-1].startswith("OK: stored == sent")
    assert Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_an_unreachable_broker_is_one_clear_error() -> None:
    done = _bench("--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--backend", "sqlite", *SHORT)
    assert done.returncode == 1
    assert "broker" in done.stderr
    assert "not reachable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.mqtt
def test_an_unreachable_database_is_one_clear_error() -> None:
    done = _bench("--db", f"postgresql://postgres@127.0.0.1:{free_port()}/x", *SHORT)
    assert done.returncode == 1
    assert "database not reachable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "argument --rate: must be greater than 0"),
        (["--rate", "fast"], "argument --rate: expected a number, got 'fast'"),
        (["--duration", "-3"], "argument --duration: must be greater than 0"),
        (["--duration", "100000"], "argument --duration: at most 86400"),
        (["--presses", "0"], "argument --presses: must be greater than 0"),
        (["--presses", "2.5"], "argument --presses: expected a number"),
        (["--processes", "65"], "argument --processes: at most 64"),
        (["--devices", "1", "--processes", "2"], "--devices 1 is fewer than --processes 2"),
        (["--backend", "mysql"], "argument --backend: invalid choice: 'mysql'"),
        (["--mqtt", "http://127.0.0.1:1883"], "argument --mqtt: expected mqtt://HOST:PORT"),
        (["--mqtt", "mqtt://127.0.0.1:99999"], "argument --mqtt: bad port"),
        (["--mqtt", "mqtt://u:p@127.0.0.1:1883"], "user/password is not supported"),
        (["--db", "mysql://x/y"], "argument --db: expected sqlite:///PATH or postgresql://"),
        (["--db", "sqlite:///"], "argument --db: expected sqlite:///PATH"),
        (
            ["--backend", "postgres", "--db", "sqlite:///x.db"],
            "--backend postgres does not match --db sqlite:///x.db",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "scgw bench: error:" in err
    assert message in err
