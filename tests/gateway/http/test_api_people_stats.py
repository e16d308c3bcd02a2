"""/api/v1/residents, /api/v1/responders, /api/v1/stats/response, /api/v1/me, /api/v1/meta and
/api/v1/users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertState, Priority, TimelineEntry
from gateway.http.api.stats import Answered, percentile, period_start, summarize
from gateway.users import Role
from tests.gateway.http.conftest import NOW, Site


async def test_residents_with_and_without_contact_details(site: Site) -> None:
    duty = (await site.call("GET", "/api/v1/residents", Role.DUTY)).json()
    assert [r["resident_id"] for r in duty["items"]] == ["r1", "r2"]
    assert duty["items"][0]["phone"] == "13800000000"
    assert duty["items"][0]["medical_notes"] == "高血压，服用华法林"
    for role in (Role.VIEWER, Role.TECHNICIAN):
        body = (await site.call("GET", "/api/v1/residents", role)).json()
        assert all(r["phone"] is None and r["medical_notes"] is None for r in body["items"])
        assert all(r["contacts"] == [] and not r["contact_details"] for r in body["items"])
    found = (await site.call("GET", "/api/v1/residents?q=3号楼", Role.DUTY)).json()
    assert [r["name"] for r in found["items"]] == ["张秀英"]
    by_building = (await site.call("GET", "/api/v1/residents?building=5", Role.DUTY)).json()
    assert [r["resident_id"] for r in by_building["items"]] == ["r2"]
    one = (await site.call("GET", "/api/v1/residents/r1", Role.RESPONDER)).json()
    assert one["contacts"][0]["phone"] == "13900009999"
    assert (await site.call("GET", "/api/v1/residents/r9", Role.DUTY)).status_code == 404
    bad = await site.call("GET", "/api/v1/residents?limit=5000", Role.DUTY)
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("query.limit")


async def test_responders_on_duty_and_load(site: Site) -> None:
    await site.call(
        "POST",
        f"/api/v1/alerts/{site.alerts['sos'].id}/assign",
        Role.DUTY,
        json={"responder_id": "v-1"},
    )
    body = (await site.call("GET", "/api/v1/responders", Role.DUTY)).json()
    by_id = {r["responder_id"]: r for r in body["items"]}
    assert by_id["v-1"]["active_alerts"] == 1
    assert by_id["v-1"]["phone"] == "13900000001"
    assert by_id["v-2"]["on_duty_now"] is False  # on_duty = "no"
    off = (await site.call("GET", "/api/v1/responders?on_duty_now=false", Role.DUTY)).json()
    assert [r["responder_id"] for r in off["items"]] == ["v-2"]
    vols = (await site.call("GET", "/api/v1/responders?role=volunteer", Role.VIEWER)).json()
    assert [r["responder_id"] for r in vols["items"]] == ["v-1", "v-2"]
    assert all(r["phone"] is None for r in vols["items"])
    bad = await site.call("GET", "/api/v1/responders?on_duty_now=maybe", Role.DUTY)
    assert bad.status_code == 422
    assert bad.json()["message"].startswith("query.on_duty_now")


# -- response times ------------------------------------------------------------------------
def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([10.0], 0.9) == 10.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([float(i) for i in range(1, 11)], 0.9) == pytest.approx(9.1)


def test_periods_are_local_days_weeks_months() -> None:
    # 2024-03-03 17:00 UTC is Monday 2024-03-04 01:00 in Shanghai.
    at = datetime(2024, 3, 3, 17, 0, tzinfo=UTC)
    day = period_start(at, "day")
    assert day is not None
    assert (day.year, day.month, day.day, day.hour) == (2024, 3, 4, 0)
    week = period_start(at, "week")
    assert week is not None
    assert (week.month, week.day) == (3, 4)
    month = period_start(at, "month")
    assert month is not None
    assert (month.month, month.day) == (3, 1)
    assert period_start(at, "all") is None


def test_summarize_groups_by_priority_and_period() -> None:
    t0 = datetime(2024, 3, 4, 2, 0, tzinfo=UTC)
    samples = [
        Answered(Priority.P1, t0, 30.0),
        Answered(Priority.P1, t0, 90.0),
        Answered(Priority.P1, t0 + timedelta(days=1), None),
        Answered(Priority.P2, t0, 200.0),
    ]
    groups = summarize(samples, "all")
    assert [(g.priority, g.alerts, g.acknowledged) for g in groups] == [
        (Priority.P1, 3, 2),
        (Priority.P2, 1, 1),
        ("all", 4, 3),
    ]
    p1 = groups[0]
    assert (p1.p50_s, p1.within_60s, p1.within_180s) == (60.0, 0.3333, 0.6667)
    daily = summarize(samples, "day")
    assert [(g.priority, g.alerts) for g in daily] == [
        (Priority.P1, 2),
        (Priority.P2, 1),
        ("all", 3),
        (Priority.P1, 1),
        ("all", 1),
    ]
    empty = summarize([], "week")
    assert [(g.priority, g.alerts, g.p50_s) for g in empty] == [("all", 0, None)]


async def test_response_stats_from_the_timeline(any_site: Site) -> None:
    site = any_site
    store = site.store
    # sos (opened 120 s ago): accepted after 20 s; smoke: acknowledged after 100 s;
    # water (P2): never answered. A cancelled, unanswered press does not count.
    sos, smoke = site.alerts["sos"], site.alerts["smoke"]
    await store.add_timeline(
        [
            TimelineEntry(
                sos.id, sos.opened_at + timedelta(seconds=20), "responder:v-1", "accepted"
            ),
            TimelineEntry(sos.id, sos.opened_at + timedelta(seconds=50), "user:x", "assigned"),
            TimelineEntry(
                smoke.id, smoke.opened_at + timedelta(seconds=100), "user:x", "acknowledged"
            ),
        ]
    )
    extra = await site.gateway.alerting.engine.open(
        kind="sos",
        priority=Priority.P1,
        device_id="th-1",
        resident_id="r1",
        at=NOW - timedelta(seconds=10),
        trigger_key="stats:cancelled",
        actor="device:th-1",
    )
    await store.transition(
        extra.alert.id,
        from_states=(AlertState.OPEN,),
        to_state=AlertState.CANCELLED,
        entry=TimelineEntry(extra.alert.id, NOW, "device:th-1", "cancelled_by_cancel"),
    )
    res = await site.call(
        "GET",
        "/api/v1/stats/response",
        Role.VIEWER,
        params={
            "from": (NOW - timedelta(hours=1)).isoformat(),
            "to": (NOW + timedelta(hours=1)).isoformat(),
        },
    )
    assert res.status_code == 200, res.text
    groups = {g["priority"]: g for g in res.json()["groups"]}
    p1 = groups["P1"]
    assert (p1["alerts"], p1["acknowledged"]) == (2, 2)
    assert p1["p50_s"] == pytest.approx(60.0)
    assert p1["p90_s"] == pytest.approx(92.0)
    assert (p1["within_60s"], p1["within_180s"]) == (0.5, 1.0)
    assert (groups["P2"]["alerts"], groups["P2"]["acknowledged"]) == (1, 0)
    assert groups["all"]["within_60s"] == pytest.approx(0.3333)

    only_p2 = await site.call("GET", "/api/v1/stats/response?priority=P2&period=day", Role.VIEWER)
    assert {g["priority"] for g in only_p2.json()["groups"]} == {"P2", "all"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=year", "query.period"),
        ("from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "query.from"),
        ("priority=P0", "query.priority"),
    ],
)
async def test_stats_bad_input(site: Site, query: str, field: str) -> None:
    res = await site.call("GET", f"/api/v1/stats/response?{query}", Role.VIEWER)
    assert res.status_code == 422
    assert res.json()["message"].startswith(field)


# -- me, meta, users --------------------------------------------------------------------------
async def test_me_and_meta(site: Site) -> None:
    me = (await site.call("GET", "/api/v1/me", Role.TECHNICIAN)).json()
    assert me == {
        "name": "technician-user",
        "role": "technician",
        "perms": ["devices", "read"],
        "via": "token",
        "csrf_token": None,
    }
    meta = (await site.call("GET", "/api/v1/meta", Role.VIEWER)).json()
    assert meta["outcomes"]["false_alarm"] == {"zh": "误报", "en": "False alarm"}
    assert meta["kinds"]["sos"]["zh"] == "紧急呼叫"
    assert meta["buckets"] == ["1m", "5m", "1h", "1d"]


async def test_admin_manages_users(any_site: Site) -> None:
    site = any_site
    res = await site.call(
        "POST", "/api/v1/users", Role.ADMIN, json={"name": "小王", "role": "duty"}
    )
    assert res.status_code == 201
    token = res.json()["token"]
    assert token.startswith("scgw_")
    me = await site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["name"] == "小王"
    dup = await site.call(
        "POST", "/api/v1/users", Role.ADMIN, json={"name": "小王", "role": "viewer"}
    )
    assert dup.status_code == 409
    names = [u["name"] for u in (await site.call("GET", "/api/v1/users", Role.ADMIN)).json()]
    assert "小王" in names
    assert token not in str(names)
    for body, field in [
        ({"name": "a b", "role": "duty"}, "body.name"),
        ({"name": "ok", "role": "boss"}, "body.role"),
        ({"name": "ok"}, "body.role"),
    ]:
        bad = await site.call("POST", "/api/v1/users", Role.ADMIN, json=body)
        assert bad.status_code == 422
        assert bad.json()["message"].startswith(field)
    assert (await site.call("DELETE", "/api/v1/users/admin-user", Role.ADMIN)).status_code == 409
    assert (await site.call("DELETE", "/api/v1/users/ghost", Role.ADMIN)).status_code == 404
    assert (await site.call("DELETE", "/api/v1/users/a%20b", Role.ADMIN)).status_code == 422
    assert (await site.call("DELETE", "/api/v1/users/小王", Role.ADMIN)).status_code == 204
    gone = await site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
