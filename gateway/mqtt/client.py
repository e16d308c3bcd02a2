"""Broker URLs and paho clients, built one way for every connection the project makes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def connect_async(
    client: mqtt.Client,
    address: BrokerAddress,
    *,
    keepalive: int,
    v5: bool,
    clean_start: bool,
    session_expiry: int = 0,
    receive_maximum: int | None = None,
) -> None:
    """Start connecting (paho's loop thread retries until the broker answers). On v5 the
    session is set here: ``clean_start`` and its expiry; on 3.1.1 it was fixed by
    ``new_client(persistent=…)``."""
    if not v5:
        client.connect_async(address.host, address.port, keepalive=keepalive)
        return
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session_expiry:
        props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    client.connect_async(
        address.host,
        address.port,
        keepalive=keepalive,
        clean_start=clean_start,
        properties=props,
    )


def new_client(
    address: BrokerAddress,
    client_id: str,
    *,
    v5: bool = False,
    persistent: bool = False,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho 2.x client with credentials, TLS and reconnect backoff set; not connected.

    ``persistent`` asks a 3.1.1 broker to keep the session (v5 sessions are set per connect
    with clean_start and a session expiry instead).
    """
    if v5:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context())
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client
