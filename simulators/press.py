"""``scgw sim press DEVICE``: one button press, published like a real caller does."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime

import orjson

from devices.models import DEVICE_ID_RE, EventType
from simulators.mqtt_client import connect_publisher

PUBLISH_TIMEOUT = 10.0


def _publish(url: str, topic: str, payload: bytes) -> None:
    client = connect_publisher(url)
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=PUBLISH_TIMEOUT)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge within {PUBLISH_TIMEOUT:.0f}s")
    finally:
        client.disconnect()
        client.loop_stop()


async def press(url: str, device_id: str, event_type: str, *, prefix: str = "scgw") -> int:
    if not DEVICE_ID_RE.match(device_id):
        print(f"invalid device id {device_id!r} (A-Z a-z 0-9 _ -, 1-64)", file=sys.stderr)
        return 2
    try:
        kind = EventType(event_type)
    except ValueError:
        choices = ", ".join(t.value for t in EventType)
        print(f"unknown event type {event_type!r}; one of: {choices}", file=sys.stderr)
        return 2
    event_id = uuid.uuid4().hex
    payload = orjson.dumps(
        {"id": event_id, "ts": datetime.now(UTC).isoformat(), "type": kind.value}
    )
    topic = f"{prefix}/{device_id}/event"
    try:
        await asyncio.to_thread(_publish, url, topic, payload)
    except (OSError, TimeoutError) as exc:
        print(f"cannot publish to {url}: {exc}", file=sys.stderr)
        return 1
    print(f"pressed {device_id}: {kind.value} (event id {event_id})")
    return 0
