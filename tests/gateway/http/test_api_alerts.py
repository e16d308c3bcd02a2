"""/api/v1/alerts: the queue with filters and pages, one alert with its timeline and resident
card, and what the desk does: acknowledge, assign, resolve, notes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devices.feedback import FeedbackKind
from gateway.users import Role
from tests.gateway.http.conftest import NOW, Site
from tests.harness.waiting import wait_for


async def test_queue_is_p1_first_then_oldest_and_pages(any_site: Site) -> None:
    site = any_site
    res = await site.call("GET", "/api/v1/alerts", Role.VIEWER)
    assert res.status_code == 200
    body = res.json()
    assert [a["kind"] for a in body["items"]] == ["sos", "smoke", "water_leak"]
    assert body["next_offset"] is None
    first = body["items"][0]
    assert first["kind_label"] == {"zh": "紧急呼叫", "en": "Emergency call"}
    assert first["resident_name"] == "张秀英"
    assert first["address"] == {"zh": "3号楼1单元201", "en": "Bldg 3, Unit 1, Room 201"}
    assert first["state"] == "open"

    page = (await site.call("GET", "/api/v1/alerts?limit=2", Role.VIEWER)).json()
    assert [a["kind"] for a in page["items"]] == ["sos", "smoke"]
    assert page["next_offset"] == 2
    rest = (await site.call("GET", "/api/v1/alerts?limit=2&offset=2", Role.VIEWER)).json()
    assert [a["kind"] for a in rest["items"]] == ["water_leak"]

    p2 = (await site.call("GET", "/api/v1/alerts?priority=P2", Role.VIEWER)).json()
    assert [a["kind"] for a in p2["items"]] == ["water_leak"]
    since = (NOW - timedelta(seconds=60)).isoformat()
    recent = await site.call("GET", "/api/v1/alerts", Role.VIEWER, params={"since": since})
    assert [a["kind"] for a in recent.json()["items"]] == ["smoke"]
    closed = (await site.call("GET", "/api/v1/alerts?state=resolved", Role.VIEWER)).json()
    assert closed["items"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("priority=P9", "query.priority"),
        ("state=done", "query.state"),
        ("since=2024-01-01T00:00:00", "query.since"),  # no time zone: ambiguous
        ("since=1800-01-01T00:00:00Z", "query.since"),
        ("until=yesterday", "query.until"),
        ("limit=0", "query.limit"),
        ("limit=100000", "query.limit"),
        ("offset=-1", "query.offset"),
    ],
)
async def test_bad_filters_are_422_with_a_message(site: Site, query: str, field: str) -> None:
    res = await site.call("GET", f"/api/v1/alerts?{query}", Role.VIEWER)
    assert res.status_code == 422
    body = res.json()
    assert body["message"].startswith(field), body
    assert body["detail"][0]["loc"][:2] == field.split(".")


async def test_detail_has_timeline_resident_and_device(site: Site) -> None:
    alert_id = site.alerts["sos"].id
    res = await site.call("GET", f"/api/v1/alerts/{alert_id}", Role.DUTY)
    assert res.status_code == 200
    body = res.json()
    assert body["timeline"][0]["action"] == "opened"
    resident = body["resident"]
    assert resident["phone"] == "13800000000"
    assert resident["medical_notes"] == "高血压，服用华法林"
    assert resident["contacts"] == [{"name": "儿子", "phone": "13900009999"}]
    assert resident["responders"][0]["name"] == "王志愿"
    assert resident["contact_details"] is True
    assert body["device"]["device_id"] == "btn-1"
    assert body["device"]["low_battery"] is True  # 15 %


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TECHNICIAN])
async def test_detail_withholds_contacts_from_roles_that_do_not_need_them(
    site: Site, role: Role
) -> None:
    body = (await site.call("GET", f"/api/v1/alerts/{site.alerts['sos'].id}", role)).json()
    resident = body["resident"]
    assert resident["name"] == "张秀英"
    assert resident["phone"] is None
    assert resident["medical_notes"] is None
    assert resident["contacts"] == []
    assert resident["responders"][0]["phone"] is None
    assert resident["contact_details"] is False
    assert "13800000000" not in str(body)
    assert "华法林" not in str(body)


async def test_unknown_or_malformed_alert_ids(site: Site) -> None:
    assert (await site.call("GET", "/api/v1/alerts/nope", Role.VIEWER)).status_code == 404
    res = await site.call("GET", "/api/v1/alerts/bad%20id!", Role.VIEWER)
    assert res.status_code == 422
    assert res.json()["message"].startswith("path.alert_id")
    for action, body in [("ack", None), ("resolve", {"outcome": "assisted"})]:
        res = await site.call("POST", f"/api/v1/alerts/nope/{action}", Role.DUTY, json=body)
        assert res.status_code == 404, action


async def test_ack_then_resolve_tells_the_device_and_the_timeline(any_site: Site) -> None:
    site = any_site
    alert_id = site.alerts["sos"].id
    res = await site.call("POST", f"/api/v1/alerts/{alert_id}/ack", Role.DUTY)
    assert res.status_code == 200
    assert res.json()["state"] == "acknowledged"
    assert res.json()["acked_by"] == "user:duty-user"
    again = await site.call("POST", f"/api/v1/alerts/{alert_id}/ack", Role.RESPONDER)
    assert again.status_code == 409
    assert "already acknowledged by user:duty-user" in again.json()["detail"]

    res = await site.call(
        "POST",
        f"/api/v1/alerts/{alert_id}/resolve",
        Role.DUTY,
        json={"outcome": "false_alarm", "note": "按错了，老人安好"},
    )
    assert res.status_code == 200
    body = res.json()
    assert (body["state"], body["outcome"], body["note"]) == (
        "resolved",
        "false_alarm",
        "按错了，老人安好",
    )
    assert body["resolved_by"] == "user:duty-user"
    assert [f.kind for f in site.feedback.sent] == [
        FeedbackKind.RESPONDER_ASSIGNED,
        FeedbackKind.RESOLVED,
    ]
    closed = await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/resolve", Role.DUTY, json={"outcome": "other"}
    )
    assert closed.status_code == 409
    assert closed.json()["detail"] == "the alert is resolved"
    assert (await site.call("POST", f"/api/v1/alerts/{alert_id}/ack", Role.DUTY)).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.outcome"),
        ({"outcome": "fixed"}, "body.outcome"),
        ({"outcome": "assisted", "note": "x" * 2001}, "body.note"),
        ({"outcome": "assisted", "note": "a\x00b"}, "body.note"),
        ({"outcome": "assisted", "extra": 1}, "body.extra"),
    ],
)
async def test_resolve_bad_input(site: Site, body: dict[str, object], field: str) -> None:
    res = await site.call(
        "POST", f"/api/v1/alerts/{site.alerts['sos'].id}/resolve", Role.DUTY, json=body
    )
    assert res.status_code == 422
    assert res.json()["message"].startswith(field), res.json()


async def test_assign_hands_the_alert_to_a_responder(any_site: Site) -> None:
    site = any_site
    alert_id = site.alerts["smoke"].id
    res = await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/assign", Role.DUTY, json={"responder_id": "v-2"}
    )
    assert res.status_code == 200
    # The desk user's assignment is the first acknowledgement; v-2 holds it.
    body = res.json()
    assert (body["state"], body["acked_by"]) == ("acknowledged", "user:duty-user")
    assert body["assignee"] == "responder:v-2"
    assert [f.kind for f in site.feedback.sent] == [FeedbackKind.RESPONDER_ASSIGNED]
    load = await site.store.responder_load(["v-2"])
    assert load == {"v-2": 1}

    # Reassigning an acknowledged alert moves it, the first ack stays; the device was told.
    res = await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/assign", Role.ADMIN, json={"responder_id": "v-1"}
    )
    assert (res.json()["acked_by"], res.json()["assignee"]) == ("user:duty-user", "responder:v-1")
    assert await site.store.responder_load(["v-1", "v-2"]) == {"v-1": 1, "v-2": 0}
    assert len(site.feedback.sent) == 1

    async def notified() -> list[str]:
        timeline = await site.store.timeline(alert_id)
        return [e.detail for e in timeline if e.action == "notify"]

    # v-1 and v-2 have no channels: the attempt is on the timeline for the desk to see.
    entries = await wait_for(lambda: notified(), timeout=5, message="assignment notices")
    assert "no channel" in entries[0]
    actions = [e.action for e in await site.store.timeline(alert_id)]
    assert actions.count("assigned") == 2

    bad = await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/assign", Role.DUTY, json={"responder_id": "nobody"}
    )
    assert bad.status_code == 422
    assert bad.json()["message"] == "body.responder_id: unknown responder 'nobody'"
    empty = await site.call("POST", f"/api/v1/alerts/{alert_id}/assign", Role.DUTY, json={})
    assert empty.status_code == 422


async def test_notes_also_on_closed_alerts(site: Site) -> None:
    alert_id = site.alerts["water"].id
    await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/resolve", Role.DUTY, json={"outcome": "assisted"}
    )
    res = await site.call(
        "POST", f"/api/v1/alerts/{alert_id}/notes", Role.RESPONDER, json={"text": "阀门已关"}
    )
    assert res.status_code == 201
    assert res.json()["actor"] == "user:responder-user"
    assert res.json()["detail"] == {"text": "阀门已关"}
    detail = (await site.call("GET", f"/api/v1/alerts/{alert_id}", Role.VIEWER)).json()
    assert detail["timeline"][-1]["action"] == "note"
    for body, field in [({"text": ""}, "body.text"), ({}, "body.text")]:
        res = await site.call("POST", f"/api/v1/alerts/{alert_id}/notes", Role.DUTY, json=body)
        assert res.status_code == 422
        assert res.json()["message"].startswith(field)
    missing = await site.call("POST", "/api/v1/alerts/nope/notes", Role.DUTY, json={"text": "x"})
    assert missing.status_code == 404


async def test_malformed_json_body_is_422(site: Site) -> None:
    res = await site.call(
        "POST",
        f"/api/v1/alerts/{site.alerts['sos'].id}/resolve",
        Role.DUTY,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert res.status_code == 422
    assert "JSON" in res.json()["message"]
