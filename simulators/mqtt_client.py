"""paho clients for the simulators, built one way: credentials, TLS and reconnect backoff from
the broker URL. (The gateway itself speaks MQTT on its own asyncio protocol, gateway/mqtt/.)"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt.address import BrokerAddress


def new_client(address: BrokerAddress, client_id: str) -> mqtt.Client:
    """A paho 2.x MQTT 3.1.1 client (clean session) with credentials, TLS and reconnect
    backoff set; not connected."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context())
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def connect_publisher(url: str, client_id: str = "", *, max_inflight: int = 1000) -> mqtt.Client:
    """Connected v3.1.1 publisher with its network loop running; raises OSError when the
    broker cannot be reached."""
    address = BrokerAddress.parse(url)
    client = new_client(address, client_id)
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    return client
