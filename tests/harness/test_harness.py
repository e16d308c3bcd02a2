"""Tests of the test harness itself: the servers start, stop, crash and come back as promised,
and the shipped mosquitto config keeps a slow persistent subscriber's queued messages."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paho.mqtt.client import Client, ConnectFlags, MQTTMessage, MQTTv5
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.harness.mosquitto import SHIPPED_CONFIG, MosquittoServer, global_options
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.harness.waiting import wait_for, wait_until

QUEUED = 2000
TOPIC = "scgw/harness-dev/telemetry"


# --------------------------------------------------------------------------- ports / waiting
def test_free_port_is_bindable_and_not_repeated() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    for port in ports[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "", "ready"])
    assert wait_until(lambda: next(calls), timeout=1, interval=0.001, message="x") == "ready"


@dataclass(frozen=True)
class _Progress:
    done: int
    total: int

    def __bool__(self) -> bool:
        return self.done >= self.total


def test_wait_until_timeout_names_the_condition_and_last_value() -> None:
    with pytest.raises(
        AssertionError,
        match=r"all stored \(not true after 0\.05s, \d+ checks; "
        r"last value: _Progress\(done=2, total=3\)\)",
    ):
        wait_until(lambda: _Progress(2, 3), timeout=0.05, message="all stored")


async def test_wait_for_accepts_sync_and_async_predicates() -> None:
    state = {"n": 0}

    def bump() -> int:
        state["n"] += 1
        return state["n"] if state["n"] >= 3 else 0

    async def abump() -> int:
        return bump()

    assert await wait_for(bump, timeout=1, interval=0.001, message="sync") == 3
    assert await wait_for(abump, timeout=1, interval=0.001, message="async") == 4


async def test_wait_for_timeout_raises_assertion_with_last_value() -> None:
    async def never() -> str:
        return ""

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"broker up .*last value: ''"):
        await wait_for(never, timeout=0.1, message="broker up")
    assert time.monotonic() - start < 1.0


# --------------------------------------------------------------------------- PostgreSQL
def _count_rows(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_pg_url_is_a_fresh_database_on_the_worker_server(
    pg_url: str, pg_server: PostgresServer
) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/t_")
    assert pg_server.port != 5432
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        max_conn = conn.execute("SHOW max_connections").fetchone()
    assert tables == (0,)
    assert max_conn is not None
    assert int(max_conn[0]) >= 100


@pytest.mark.postgres
def test_pg_kill_and_restart_keep_committed_data(pg_owned_server: PostgresServer) -> None:
    pg = pg_owned_server
    url = pg.create_database("harness")
    port = pg.port
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (i int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
    survivor = psycopg.connect(url)  # a client connection open across the crash

    pg.kill()  # SIGKILL postmaster + backends
    assert not pg.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    pg.start()  # crash recovery, same port and data dir
    assert pg.port == port
    assert _count_rows(url) == 1000
    with pytest.raises(psycopg.OperationalError):
        survivor.execute("SELECT 1")
    survivor.close()

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (1001)")
    pg.restart()  # clean stop + start
    assert pg.port == port
    assert _count_rows(url) == 1001
    assert "database system is ready to accept connections" in pg.log_text()


@pytest.mark.postgres
def test_pg_stop_then_start_again(pg_owned_server: PostgresServer) -> None:
    pg = pg_owned_server
    pg.stop()
    assert not pg.running
    pg.stop()  # idempotent
    pg.start()
    with psycopg.connect(pg.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --------------------------------------------------------------------------- mosquitto
class _Subscriber:
    """A paho MQTT v5 client with a persistent session that records what it receives."""

    def __init__(self, broker: MosquittoServer, client_id: str) -> None:
        self._lock = threading.Lock()
        self.payloads: list[bytes] = []
        self.session_present: bool | None = None
        self.connack: ReasonCode | None = None
        self.suback = threading.Event()
        self.client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, timeout=10, message="CONNACK received")
        assert self.connack is not None
        assert not self.connack.is_failure, f"{client_id} refused: {self.connack}"

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.session_present = flags.session_present
        self.connack = reason_code  # checked by the test thread, not in paho's thread

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self.suback.set()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))

    def received(self) -> int:
        with self._lock:
            return len(self.payloads)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.suback.wait(10), "SUBACK received"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish_qos1(broker: MosquittoServer, count: int) -> None:
    pub = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="harness-publisher",
        protocol=MQTTv5,
    )
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(TOPIC, f"m{i:05d}".encode(), qos=1) for i in range(count)]
        wait_until(
            lambda: all(info.is_published() for info in infos),
            timeout=60,
            message=f"broker PUBACKed all {count} QoS 1 messages",
        )
    finally:
        pub.disconnect()
        pub.loop_stop()


def _queue_while_offline_then_restart(broker: MosquittoServer) -> _Subscriber:
    """Persistent subscriber goes away, 2,000 QoS 1 arrive, broker restarts cleanly, the
    subscriber comes back: returns the reconnected subscriber (receiving)."""
    sub = _Subscriber(broker, "harness-gateway")
    assert sub.session_present is False
    sub.subscribe(TOPIC)
    sub.close()

    _publish_qos1(broker, QUEUED)
    broker.restart()

    return _Subscriber(broker, "harness-gateway")


@pytest.mark.mqtt
def test_test_broker_config_is_the_shipped_global_config(mosquitto: MosquittoServer) -> None:
    text = mosquitto.config_text()
    shipped = global_options(SHIPPED_CONFIG.read_text())
    for option in ("persistence true", "max_queued_messages 0", "sys_interval 10"):
        assert option in shipped
        assert option in text.splitlines()
    assert "listener 1883" not in text
    assert f"listener {mosquitto.port} 127.0.0.1" in text
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert mosquitto.port != 1883


@pytest.mark.mqtt
def test_shipped_config_keeps_2000_queued_qos1_across_clean_restart(
    mosquitto: MosquittoServer,
) -> None:
    port = mosquitto.port
    sub = _queue_while_offline_then_restart(mosquitto)
    try:
        assert mosquitto.port == port
        assert sub.session_present is True, "persistent session restored from disk"
        wait_until(
            lambda: sub.received() >= QUEUED,
            timeout=60,
            message=f"all {QUEUED} queued messages delivered after restart",
        )
    finally:
        sub.close()
    expected = [f"m{i:05d}".encode() for i in range(QUEUED)]
    assert sorted(set(sub.payloads)) == expected
    assert sub.payloads[:QUEUED] == expected, "queued messages arrive in publish order"
    assert "dropped" not in mosquitto.log_text()


@pytest.mark.mqtt
def test_default_mosquitto_config_drops_them_control() -> None:
    """Control experiment: the same flow against mosquitto's defaults (plus persistence)
    loses everything past max_queued_messages=1000, and counts it in $SYS."""
    with MosquittoServer(base_config=None, extra_config=["persistence true"]) as broker:
        broker.start()
        sub = _queue_while_offline_then_restart(broker)
        try:
            assert sub.session_present is True
            wait_until(lambda: sub.received() >= 1000, timeout=60, message="1000 queued delivered")
            # Nothing more is coming: give a straggler the chance to show up.
            with pytest.raises(AssertionError):
                wait_until(lambda: sub.received() > 1000, timeout=0.5, message="more")
        finally:
            sub.close()
        assert sub.received() == 1000
        assert "Outgoing messages are being dropped for client harness-gateway" in (
            broker.log_text()
        )


@pytest.mark.mqtt
def test_mosquitto_kill_then_start_on_the_same_port(mosquitto: MosquittoServer) -> None:
    port = mosquitto.port
    pid = mosquitto.pid
    mosquitto.kill()
    assert not mosquitto.running
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        pass
    mosquitto.start()
    assert mosquitto.running
    assert mosquitto.pid != pid
    assert mosquitto.port == port
    sub = _Subscriber(mosquitto, "after-kill")
    sub.close()


def test_sqlite_url_points_into_tmp_path(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/scgw.db"
