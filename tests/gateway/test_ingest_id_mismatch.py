"""A payload naming another device than its topic, end to end (real mosquitto, both
databases): counted as ``id_mismatch``, stored under neither id, no alert; the honest device
publishing next is unaffected."""

from __future__ import annotations

from tests.gateway.conftest import Publisher, gateway_settings, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for


async def test_topic_and_payload_id_disagree(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    await register(db_url, ["btn-1", "btn-2"])
    gw = await start_gateway(gateway_settings(mosquitto, db_url))
    publisher.json("scgw/btn-1/event", {"type": "sos", "id": "x-1", "device_id": "btn-2"})
    publisher.json("scgw/btn-1/status", {"state": "offline", "device": "btn-2"})
    publisher.json("scgw/btn-1/telemetry", {"metrics": {"temperature": 21.0}, "device": 2})
    publisher.json("scgw/btn-2/event", {"type": "sos", "id": "ok-1", "device_id": "btn-2"})
    await publisher.flushed()

    def rejected(lane: str) -> float:
        return gw.metric("scgw_messages_rejected_total", lane=lane, reason="id_mismatch")

    await wait_for(
        lambda: gw.count("SELECT count(*) FROM v_events WHERE event_id = 'ok-1'"),
        timeout=10,
        message="the honest press is stored",
    )
    await wait_for(
        lambda: rejected("event") == 1 and rejected("telemetry") == 2,
        timeout=10,
        message="both mismatches on the telemetry lane counted",
    )
    assert await gw.count("SELECT count(*) FROM v_events WHERE event_id = 'x-1'") == 0
    assert await gw.count("SELECT count(*) FROM v_readings") == 0
    assert await gw.count("SELECT count(*) FROM alerts WHERE device_id = 'btn-1'") == 0
