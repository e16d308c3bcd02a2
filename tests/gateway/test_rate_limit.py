"""Per-device token bucket: a flood is cut at the burst, other devices are untouched; the
flooding device is flagged for technicians until it has been quiet for a while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from devices.models import DeviceType
from gateway.http.site import build_app
from gateway.metrics import Metrics
from gateway.rate_limit import DeviceRateLimiter
from gateway.users import Role, hash_secret, new_token
from tests.gateway.conftest import Publisher, gateway_settings, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_flood_is_cut_and_others_pass() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(rate=10, burst=50, clock=clock)
    allowed = sum(limiter.allow("flooder") for _ in range(1000))
    assert allowed == 50
    assert limiter.allow("neighbour")
    assert limiter.flagged == {"flooder"}


def test_tokens_refill_at_rate() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(rate=10, burst=5, clock=clock)
    assert sum(limiter.allow("d") for _ in range(10)) == 5
    clock.now = 0.5  # 5 tokens back
    assert sum(limiter.allow("d") for _ in range(10)) == 5


class Wall:
    """Wall-clock time that moves with the fake monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.start = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.clock.now)


def flooding(clear_after: float = 600.0) -> tuple[Clock, DeviceRateLimiter, Metrics]:
    clock = Clock()
    metrics = Metrics()
    limiter = DeviceRateLimiter(
        rate=1, burst=3, clear_after=clear_after, clock=clock, wall=Wall(clock), metrics=metrics
    )
    return clock, limiter, metrics


def test_flag_records_when_and_how_much_was_refused() -> None:
    clock, limiter, metrics = flooding()
    assert limiter.flag("d") is None
    for _ in range(3):
        assert limiter.allow("d")
    assert limiter.flag("d") is None  # the burst is allowed: not flooding
    clock.now = 0.1
    refused = sum(not limiter.allow("d") for _ in range(10))
    assert refused == 10
    clock.now = 5.0
    assert sum(not limiter.allow("d") for _ in range(10)) == 7  # 3 tokens back (capped)

    flag = limiter.flag("d")
    assert flag is not None
    assert flag.since == datetime(2025, 3, 1, 8, 0, 0, 100000, tzinfo=UTC)
    assert flag.last_rejected == datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC)
    assert flag.rejected == 10 + 7
    assert limiter.flags() == {"d": flag}
    assert metrics.value("scgw_devices_rate_limited") == 1
    assert metrics.value("scgw_rate_limit_flags_total") == 1  # one episode, not 16


def test_flag_clears_after_quiet_period_and_a_new_flood_flags_again() -> None:
    clock, limiter, metrics = flooding(clear_after=600)
    for _ in range(5):
        limiter.allow("d")
    assert limiter.flagged == {"d"}
    clock.now = 599.0  # quiet, but not long enough
    assert limiter.flag("d") is not None
    # Sending within the limit is quiet too: nothing refused.
    assert limiter.allow("d")
    clock.now = 600.0
    assert limiter.flag("d") is None
    assert limiter.flags() == {}
    assert metrics.value("scgw_devices_rate_limited") == 0

    for _ in range(10):
        limiter.allow("d")
    flag = limiter.flag("d")
    assert flag is not None
    assert flag.since == datetime(2025, 3, 1, 8, 10, tzinfo=UTC)
    assert flag.rejected == 7  # the bucket is full again: 3 of the 10 pass
    assert metrics.value("scgw_rate_limit_flags_total") == 2


def test_refusals_keep_the_flag_up_while_the_flood_goes_on() -> None:
    clock, limiter, _ = flooding(clear_after=60)
    for second in range(0, 600, 30):  # 10 min of over-limit bursts every 30 s
        clock.now = float(second)
        for _ in range(50):
            limiter.allow("d")
    flag = limiter.flag("d")
    assert flag is not None
    assert flag.since == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    clock.now = 570 + 59
    assert limiter.flag("d") is not None
    clock.now = 570 + 60
    assert limiter.flag("d") is None


def test_other_devices_are_never_flagged_by_a_neighbour() -> None:
    clock, limiter, metrics = flooding()
    for _ in range(100):
        limiter.allow("flooder")
        clock.now += 0.001
    assert limiter.allow("quiet-1")
    assert set(limiter.flags()) == {"flooder"}
    assert metrics.value("scgw_devices_rate_limited") == 1


def test_flags_are_bounded() -> None:
    clock, limiter, _ = flooding()
    limiter.MAX_FLAGS = 5
    for i in range(8):
        for _ in range(4):
            limiter.allow(f"d{i}")
        clock.now += 1.0
    assert set(limiter.flags()) == {"d3", "d4", "d5", "d6", "d7"}  # the oldest went first


# -- end to end: a real mosquitto, both databases, the devices API of the running gateway ------
async def test_flooding_device_is_flagged_in_the_devices_api_and_its_neighbour_is_not(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway: Any
) -> None:
    await register(db_url, ["flooder", "neighbour"], DeviceType.TEMP_HUMIDITY)
    gw = await start_gateway(
        gateway_settings(mosquitto, db_url, ingest={"device_rate": 0.001, "device_burst": 5})
    )
    token = new_token()
    await gw.store.create_user("tech", Role.TECHNICIAN, hash_secret(token), datetime.now(UTC))
    app = build_app(gw.gateway)
    start = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(60):
        at = (start + timedelta(milliseconds=i)).isoformat()
        publisher.json("scgw/flooder/telemetry", {"ts": at, "metrics": {"temperature": 20}})
    for i in range(3):
        at = (start + timedelta(seconds=i)).isoformat()
        publisher.json("scgw/neighbour/telemetry", {"ts": at, "metrics": {"temperature": 21}})
    await publisher.flushed()

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        async def flagged() -> list[str]:
            res = await client.get("/api/v1/devices", params={"status": "rate_limited"})
            assert res.status_code == 200, res.text
            return [d["device_id"] for d in res.json()["items"]]

        await wait_for(flagged, timeout=15, message="the flooder flagged in the API")
        await wait_for(
            lambda: gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'neighbour'"),
            timeout=15,
            message="the neighbour's readings stored",
        )
        assert await flagged() == ["flooder"]
        flooder = (await client.get("/api/v1/devices/flooder")).json()
        neighbour = (await client.get("/api/v1/devices/neighbour")).json()
    assert flooder["rate_limited"] is True
    assert flooder["rejected_recently"] == 55  # 60 sent, burst 5
    assert neighbour["rate_limited"] is False
    assert await gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'neighbour'") == 3
    # Flagged, not cut off: by default a flood is kept (SPEC, "No silent discard by default").
    await wait_for(
        lambda: _is(gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'flooder'"), 60),
        timeout=15,
        message="every reading of the flooder kept",
    )
    assert gw.metric("scgw_devices_rate_limited") == 1
    assert gw.metric("scgw_rate_limit_flags_total") == 1
    await app.state.feed.stop()
    await app.state.actions.stop()


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)
