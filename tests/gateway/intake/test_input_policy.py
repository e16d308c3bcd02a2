"""The life-safety input policy (issue 13, SPEC Intake): a press is never the price of a bad
field, an unregistered button, a fast clock, a retained copy or content a database refuses.

Real parts: mosquitto, both databases (PostgreSQL alone where the fault is PostgreSQL's),
the transports of ``site_factory``, a webhook as the volunteer's and the desk's phones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.runtime import Gateway
from tests.alerts.conftest import DeviceInbox, device_inbox
from tests.gateway.conftest import Publisher
from tests.gateway.intake.conftest import TRANSPORTS, SiteFactory, seed, sos_device
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver

__all__ = ["device_inbox"]  # the fixture, shared with the alert tests


async def rows(gateway: Gateway, sql: str, *params: object) -> list[tuple[Any, ...]]:
    return await gateway.store.query(sql, params)


@pytest.mark.parametrize(
    "bad",
    [{"battery": 500}, {"ts": "yesterday"}, {"id": 12345}, {"seq": -1}],
    ids=["battery-500", "ts-unreadable", "id-not-text", "seq-negative"],
)
async def test_an_sos_with_a_bad_optional_field_is_kept_and_paged(
    bad: dict[str, Any],
    db_url: str,
    phones: Receiver,
    site_factory: SiteFactory,
    device_inbox: DeviceInbox,
) -> None:
    await seed(db_url, phones, [sos_device("mqtt")])
    site = await site_factory(db_url)
    site.publisher.json("scgw/btn-mqtt/event", {"type": "sos", **bad})
    await wait_for(lambda: phones.to("/v-1"), timeout=30, message="volunteer paged")
    await wait_for(
        lambda: device_inbox.commands() == ["alert_received"], timeout=10, message="feedback"
    )
    (payload,) = await rows(site.gateway, "SELECT payload FROM v_events")
    stored = json.loads(payload[0]) if isinstance(payload[0], str) else payload[0]
    assert stored["invalid"] == list(bad)
    metrics = site.gateway.metrics
    assert (
        metrics.value("scgw_messages_rejected_total", lane="event", reason="invalid_payload") == 1
    )


async def test_readings_stay_strict(
    db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("mqtt")])
    site = await site_factory(db_url)
    site.publisher.json("scgw/btn-mqtt/telemetry", {"metrics": {"battery": "full"}})
    site.publisher.json("scgw/btn-mqtt/event", {"type": "explode", "battery": 50})
    await site.publisher.flushed()
    metrics = site.gateway.metrics

    def rejected(lane: str) -> float:
        return metrics.value("scgw_messages_rejected_total", lane=lane, reason="invalid_payload")

    await wait_for(
        lambda: rejected("telemetry") == 1 and rejected("event") == 1,
        timeout=10,
        message="both refused, counted",
    )
    assert await rows(site.gateway, "SELECT count(*) FROM v_events") == [(0,)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unregistered_devices_sos_reaches_the_desk_as_a_p1_alert(
    transport: str, db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [])  # the button is nobody's yet
    site = await site_factory(db_url)
    await site.press(transport)
    await wait_for(lambda: phones.to("/desk"), timeout=30, message="desk paged")
    await site.finish()
    (alert,) = await site.gateway.alerting.store.list_alerts()
    assert (alert.kind, alert.priority.value, alert.resident_id) == (
        "unregistered_device",
        "P1",
        None,
    )
    assert "未登记设备" in phones.to("/desk")[0].json()["title"]
    pending = await site.gateway.store.pending_devices()
    assert [p.device_id for p in pending] == [alert.device_id]
    assert pending[0].sos_count == 1


async def test_adopting_the_unregistered_device_links_its_alert_to_the_resident(
    db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [])
    site = await site_factory(db_url)
    await site.press("mqtt")
    await wait_for(lambda: phones.to("/desk"), timeout=30, message="desk paged")
    await site.gateway.store.upsert_devices(
        [DeviceRecord("btn-mqtt", DeviceType.SOS_BUTTON, resident_id="r-1")]
    )
    await site.gateway.registry.check()
    linked = await site.gateway.alerting.engine.device_registered("btn-mqtt", "user:tech")
    (alert,) = await site.gateway.alerting.store.list_alerts()
    assert linked == [alert.id]
    assert alert.resident_id == "r-1"


async def test_a_clock_half_an_hour_fast_does_not_keep_a_device_seen_in_the_future(
    db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("mqtt")])
    site = await site_factory(db_url)
    ahead = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    site.publisher.json("scgw/btn-mqtt/telemetry", {"ts": ahead, "metrics": {"battery": 80}})
    site.publisher.json("scgw/btn-mqtt/event", {"id": "fast-1", "ts": ahead, "type": "sos"})
    await wait_for(lambda: phones.to("/v-1"), timeout=30, message="paged")
    metrics = site.gateway.metrics
    await wait_for(
        lambda: metrics.value("scgw_inputs_flagged_total", lane="telemetry", flag="clock_ahead"),
        timeout=10,
        message="the telemetry's fast clock flagged",
    )
    now = datetime.now(UTC)
    (row,) = await rows(site.gateway, "SELECT last_seen, online FROM v_devices")
    last_seen = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    assert last_seen <= now
    assert bool(row[1]) is True
    (event_time,) = await rows(site.gateway, "SELECT time FROM v_events")
    stamp = event_time[0]
    assert (stamp if isinstance(stamp, datetime) else datetime.fromisoformat(stamp)) <= now
    assert metrics.value("scgw_inputs_flagged_total", lane="event", flag="clock_ahead") == 1


async def test_v_devices_and_the_api_agree_that_a_silent_device_is_offline(
    db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("mqtt")])
    site = await site_factory(db_url, alerts={"offline_after": {"sos_button": "1s"}})
    site.publisher.json("scgw/btn-mqtt/status", {"state": "online"})
    await wait_for(
        lambda: _is(rows(site.gateway, "SELECT online FROM v_devices"), [(1,)], [(True,)]),
        timeout=10,
        message="online",
    )
    # Silent past its type's timeout: offline in the view and in the API alike.
    await wait_for(
        lambda: _is(rows(site.gateway, "SELECT online FROM v_devices"), [(0,)], [(False,)]),
        timeout=10,
        message="offline in v_devices",
    )
    console_rows = await site.gateway.store.device_status("btn-mqtt")
    assert console_rows[0].online is False


async def _is(value: Any, *expected: object) -> bool:
    return await value in expected


async def test_a_retained_sos_without_id_is_one_alert_across_restarts(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("mqtt")])
    retainer = Publisher(mosquitto.url, "retaining-button")
    try:
        # A misconfigured device publishes its press retained (the ACL allows its own topic).
        retainer.json("scgw/btn-mqtt/event", {"type": "sos"}, retain=True)
        await retainer.flushed()
        for _ in range(3):
            site = await site_factory(db_url)
            gateway = site.gateway
            await wait_for(
                lambda gw=gateway: _is(rows(gw, "SELECT count(*) FROM v_events"), [(1,)]),
                timeout=15,
                message="the retained copy stored once",
            )
            gateway.request_stop()
            await wait_for(
                lambda gw=gateway: not gw.parts.lanes[0].connected, timeout=30, message="stopped"
            )
        assert await site.gateway.alerting.store.list_alerts() == []
        assert phones.requests == []
    finally:
        retainer.raw("scgw/btn-mqtt/event", b"", retain=True)  # clear it
        retainer.close()
