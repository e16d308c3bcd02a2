"""A small blocking paho publisher the simulators share."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from gateway.mqtt.client import BrokerAddress, new_client


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
