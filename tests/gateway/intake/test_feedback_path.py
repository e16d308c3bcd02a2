"""Device feedback never stands in the way (SPEC Intake): with the downlink stalled, presses
and readings are still stored and acknowledged at full speed, and the feedback follows once
the link returns.

The stall is at the one seam between the gateway and its downlink (the MQTT command sender
waits for a release, as a publish to a broker that stopped reading would); everything else
is real: mosquitto, the database, the intake, the alert engine, the device's inbox.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from devices.feedback import Delivery, Feedback, FeedbackSender
from devices.models import DeviceType
from gateway.runtime import Gateway
from tests.alerts.conftest import DeviceInbox, alert_settings, device_inbox, seed_community
from tests.gateway.conftest import Publisher, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for
from tests.harness.webhook import running_receiver

__all__ = ["device_inbox"]  # the fixture, shared with the alert tests

BUTTONS = [f"btn-{n:02d}" for n in range(2, 22)]
READINGS = 2_000
T0 = datetime.now(UTC) - timedelta(minutes=30)


class StalledDownlink:
    """The MQTT command sender, stalled until ``release`` (a broker that stopped reading)."""

    def __init__(self, sender: FeedbackSender) -> None:
        self._sender = sender
        self.release = asyncio.Event()
        self.waiting = 0

    async def send(self, feedback: Feedback) -> Delivery:
        self.waiting += 1
        await self.release.wait()
        self.waiting -= 1
        return await self._sender.send(feedback)


async def test_a_stalled_downlink_holds_no_ack_and_feedback_follows(
    mosquitto: MosquittoServer, db_url: str, device_inbox: DeviceInbox
) -> None:
    async with running_receiver() as phones:
        await seed_community(db_url, phones)
        await register(db_url, BUTTONS)
        await register(db_url, ["th-9"], DeviceType.TEMP_HUMIDITY)
        gateway = Gateway(alert_settings(mosquitto, db_url, free_port()), http=False)
        original = gateway.feedback.sender("mqtt")
        assert original is not None
        stalled = StalledDownlink(original)
        gateway.feedback.register("mqtt", stalled)
        task = asyncio.create_task(gateway.run())
        publisher = Publisher(mosquitto.url, "stalled-downlink-devices")
        try:
            await wait_for(gateway.ingesting.is_set, timeout=30, message="gateway ingesting")
            for n, device in enumerate(BUTTONS):
                publisher.json(f"scgw/{device}/event", {"id": f"p-{n}", "seq": n, "type": "sos"})
            for n in range(READINGS):
                at = (T0 + timedelta(milliseconds=n)).isoformat()
                publisher.json("scgw/th-9/telemetry", {"ts": at, "metrics": {"temperature": 21.5}})
            await publisher.flushed()

            def acked(lane: str) -> float:
                return gateway.metrics.value("scgw_ack_lag_seconds_count", lane=lane)

            # Every press and reading stored and acked while no feedback can leave.
            await wait_for(lambda: acked("event") >= len(BUTTONS), timeout=60, message="presses")
            await wait_for(lambda: acked("telemetry") >= READINGS, timeout=60, message="readings")
            await wait_for(lambda: stalled.waiting > 0, timeout=10, message="downlink stalled")
            assert device_inbox.commands() == []
            events = await gateway.store.query("SELECT count(*) FROM v_events")
            assert events == [(len(BUTTONS),)]
            readings = await gateway.store.query(
                "SELECT count(*) FROM v_readings WHERE device_id = 'th-9'"
            )
            assert readings == [(READINGS,)]

            stalled.release.set()  # the link is back: the feedback follows
            await wait_for(
                lambda: len(device_inbox.commands()) >= len(BUTTONS),
                timeout=30,
                message="feedback delivered after the link returned",
            )
            told: dict[str, Any] = {m["topic"].split("/")[1]: m for m in device_inbox.messages}
            assert set(told) == set(BUTTONS)
            assert {m["cmd"] for m in told.values()} == {"alert_received"}
            assert told["btn-05"]["seq"] == 3
        finally:
            publisher.close()
            stalled.release.set()
            gateway.request_stop()
            await asyncio.wait_for(task, 30)
