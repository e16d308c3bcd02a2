"""/api/v1/devices: health with filters, readings bucketed in the database on both backends,
registration; /api/v1/pending-devices: the list and adoption."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway.users import Role
from tests.gateway.http.conftest import NOW, Site


async def _devices(site: Site, query: str = "") -> list[str]:
    res = await site.call("GET", f"/api/v1/devices{query}", Role.VIEWER)
    assert res.status_code == 200, res.text
    return [d["device_id"] for d in res.json()["items"]]


async def test_device_health_and_filters(site: Site) -> None:
    assert await _devices(site) == ["btn-1", "smoke-1", "th-1", "water-9"]
    # smoke-1 last seen two days ago: past the 30 min timeout of smoke detectors.
    assert await _devices(site, "?status=offline") == ["smoke-1"]
    assert await _devices(site, "?status=low_battery") == ["btn-1"]
    assert await _devices(site, "?status=never_seen") == ["water-9"]
    assert await _devices(site, "?status=ok") == ["th-1"]
    assert await _devices(site, "?type=temp_humidity") == ["th-1"]
    assert await _devices(site, "?q=3号楼") == ["btn-1", "th-1"]  # the resident's address
    assert await _devices(site, "?building=9") == ["water-9"]
    page = (await site.call("GET", "/api/v1/devices?limit=3", Role.VIEWER)).json()
    assert page["next_offset"] == 3

    th = (await site.call("GET", "/api/v1/devices/th-1", Role.VIEWER)).json()
    assert (th["battery"], th["rssi"], th["online"]) == (88, -70.0, True)
    assert th["metrics"] == ["humidity", "temperature"]
    assert th["type_label"]["zh"] == "温湿度传感器"
    btn = (await site.call("GET", "/api/v1/devices/btn-1", Role.VIEWER)).json()
    assert [a["kind"] for a in btn["alerts"]] == ["sos"]
    assert (await site.call("GET", "/api/v1/devices/nope", Role.VIEWER)).status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=broken", "query.status"),
        ("?type=toaster", "query.type"),
        ("?limit=0", "query.limit"),
        ("?q=" + "x" * 101, "query.q"),
    ],
)
async def test_device_list_bad_input(site: Site, query: str, field: str) -> None:
    res = await site.call("GET", f"/api/v1/devices{query}", Role.VIEWER)
    assert res.status_code == 422
    assert res.json()["message"].startswith(field)


async def test_readings_raw_and_bucketed_in_the_database(any_site: Site) -> None:
    site = any_site
    url = "/api/v1/devices/th-1/readings"
    raw = (await site.call("GET", f"{url}?metric=temperature", Role.VIEWER)).json()
    points = raw["series"][0]["points"]
    assert raw["bucket"] is None
    assert len(points) == 36
    assert points[0]["count"] == 1
    assert points[0]["avg"] == pytest.approx(20.0)
    assert points[-1]["avg"] == pytest.approx(25.6)

    hourly = (await site.call("GET", f"{url}?metric=temperature&bucket=1h", Role.VIEWER)).json()
    buckets = hourly["series"][0]["points"]
    assert sum(p["count"] for p in buckets) == 36
    assert 6 <= len(buckets) <= 7  # six hours of 10-minute readings, bucket edges aside
    for p in buckets:
        assert p["min"] <= p["avg"] <= p["max"]
        assert p["time"].endswith(("+00:00", "Z"))
    starts = [p["time"] for p in buckets]
    assert starts == sorted(starts)
    assert all(s[14:19] == "00:00" for s in starts)  # hour boundaries

    since = {"bucket": "1d", "from": _iso(NOW - timedelta(days=2))}
    daily = (await site.call("GET", url, Role.VIEWER, params=since)).json()
    by_metric = {s["metric"]: s["points"] for s in daily["series"]}
    assert set(by_metric) == {"humidity", "temperature"}
    assert sum(p["count"] for p in by_metric["temperature"]) == 36
    for p in by_metric["temperature"]:
        # Local (UTC+8) midnight is 16:00 UTC.
        assert p["time"][11:19] == "16:00:00", p["time"]

    five = (await site.call("GET", f"{url}?metric=temperature&bucket=5m", Role.VIEWER)).json()
    assert len(five["series"][0]["points"]) == 36  # one reading per 5-minute bucket

    window = {
        "from": _iso(NOW - timedelta(minutes=35)),
        "to": _iso(NOW - timedelta(minutes=5)),
        "metric": "temperature",
    }
    part = (await site.call("GET", url, Role.VIEWER, params=window)).json()
    assert len(part["series"][0]["points"]) == 3  # 30, 20, 10 minutes ago


def _iso(at: datetime) -> str:
    return at.isoformat()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?bucket=2m", "query.bucket"),
        ("?metric=temp%20erature", "query.metric"),
        ("?from=2024-01-01", "query.from"),
        ("?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", "query.from"),
        ("?bucket=1m&from=2001-01-01T00:00:00Z", "query.bucket"),  # far too many buckets
    ],
)
async def test_readings_bad_input(site: Site, query: str, field: str) -> None:
    res = await site.call("GET", f"/api/v1/devices/th-1/readings{query}", Role.VIEWER)
    assert res.status_code == 422, res.text
    assert res.json()["message"].startswith(field), res.json()


async def test_readings_of_an_unknown_device(site: Site) -> None:
    res = await site.call("GET", "/api/v1/devices/ghost/readings", Role.VIEWER)
    assert res.status_code == 404


async def test_pending_device_is_adopted_by_a_technician(any_site: Site) -> None:
    site = any_site
    pending = (await site.call("GET", "/api/v1/pending-devices", Role.DUTY)).json()
    assert [(p["device_id"], p["sos_count"]) for p in pending] == [("stray-7", 1)]
    res = await site.call(
        "POST",
        "/api/v1/pending-devices/stray-7/adopt",
        Role.TECHNICIAN,
        json={"type": "pendant", "name": "张阿姨的挂件", "resident_id": "r1"},
    )
    assert res.status_code == 201, res.text
    device = res.json()
    assert (device["device_id"], device["type"], device["resident_id"]) == (
        "stray-7",
        "pendant",
        "r1",
    )
    assert (await site.call("GET", "/api/v1/pending-devices", Role.DUTY)).json() == []
    assert await site.store.device_exists("stray-7")
    # The ingest path knows it at once (no wait for the periodic registry re-check).
    assert site.gateway.registry.known("stray-7")
    assert site.gateway.alerting.registry.device("stray-7") is not None
    again = await site.call(
        "POST", "/api/v1/pending-devices/stray-7/adopt", Role.TECHNICIAN, json={"type": "pendant"}
    )
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.type"),
        ({"type": "toaster"}, "body.type"),
        ({"type": "pendant", "resident_id": "r404"}, "body.resident_id"),
        ({"type": "pendant", "name": "x" * 201}, "body.name"),
    ],
)
async def test_adopt_bad_input(site: Site, body: dict[str, object], field: str) -> None:
    res = await site.call(
        "POST", "/api/v1/pending-devices/stray-7/adopt", Role.TECHNICIAN, json=body
    )
    assert res.status_code == 422
    assert res.json()["message"].startswith(field), res.json()
    assert (await site.call("GET", "/api/v1/pending-devices", Role.DUTY)).json() != []


async def test_put_registers_and_updates_a_device(site: Site) -> None:
    res = await site.call(
        "PUT",
        "/api/v1/devices/gas-1",
        Role.TECHNICIAN,
        json={"type": "gas_detector", "room": "厨房"},
    )
    assert res.status_code == 200
    assert res.json()["never_seen"] is True
    res = await site.call(
        "PUT",
        "/api/v1/devices/gas-1",
        Role.ADMIN,
        json={"type": "gas_detector", "resident_id": "r2"},
    )
    assert res.json()["resident_id"] == "r2"
    assert res.json()["address"]["zh"] == "5号楼2单元302"
    bad = await site.call(
        "PUT", "/api/v1/devices/has%20space", Role.TECHNICIAN, json={"type": "pendant"}
    )
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("path.device_id")


async def test_flooding_device_is_flagged_for_technicians(site: Site) -> None:
    limiter = site.gateway.limiter
    burst = site.gateway.settings.ingest.device_burst
    refused = sum(not limiter.allow("th-1") for _ in range(burst + 50))
    assert refused >= 50
    assert limiter.allow("btn-1")  # a neighbour within its limit
    await site.gateway.save_flood_flags()  # what the running gateway does every second

    assert await _devices(site, "?status=rate_limited") == ["th-1"]
    assert await _devices(site, "?status=ok") == []  # th-1 was the one healthy device
    listed = {
        d["device_id"]: d
        for d in (await site.call("GET", "/api/v1/devices", Role.TECHNICIAN)).json()["items"]
    }
    assert listed["btn-1"]["rate_limited"] is False
    assert listed["btn-1"]["rate_limited_since"] is None
    assert listed["btn-1"]["rejected_recently"] == 0
    th = (await site.call("GET", "/api/v1/devices/th-1", Role.VIEWER)).json()
    assert th["rate_limited"] is True
    assert th["rejected_recently"] == refused
    since = datetime.fromisoformat(th["rate_limited_since"])
    assert since.tzinfo is not None
    assert since <= datetime.fromisoformat(th["rate_limited_last"])
    assert site.gateway.metrics.value("scgw_devices_rate_limited") == 1
    metrics = (await site.call("GET", "/metrics")).text
    assert "scgw_devices_rate_limited 1.0" in metrics
    assert 'device_id="th-1"' not in metrics  # no per-device series


async def test_unregistered_flooder_is_not_listed(site: Site) -> None:
    limiter = site.gateway.limiter
    for _ in range(site.gateway.settings.ingest.device_burst + 5):
        limiter.allow("stray-9")
    await site.gateway.save_flood_flags()
    assert await _devices(site, "?status=rate_limited") == []
    assert site.gateway.metrics.value("scgw_devices_rate_limited") == 1
