"""A small blocking paho publisher the simulators share."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt.lane import BrokerAddress


def connect_publisher(url: str, client_id: str = "", *, max_inflight: int = 1000) -> mqtt.Client:
    """Connected v3.1.1 publisher with its network loop running; raises OSError when the
    broker cannot be reached."""
    address = BrokerAddress.parse(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context())
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    return client
