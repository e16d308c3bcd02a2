"""The audit log through the API: every human action and every read of a resident's card is
on record with who, role, what, target and client address; only admins read it; no token or
resident detail is ever written into it."""

from __future__ import annotations

import json
from typing import Any

from alerts.accept import issue_tokens
from gateway.users import Role
from tests.gateway.http.conftest import NOW, Site

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _audit(site: Site, query: str = "") -> list[dict[str, Any]]:
    res = await site.call("GET", f"/api/v1/audit{query}", Role.ADMIN)
    assert res.status_code == 200, res.text
    return list(res.json()["items"])


def _brief(items: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    return [(e["actor"], e["action"], e["target_kind"], e["target_id"]) for e in items]


async def test_desk_actions_and_card_reads_are_recorded(any_site: Site) -> None:
    site = any_site
    sos, smoke = site.alerts["sos"].id, site.alerts["smoke"].id
    calls = [
        ("GET", f"/api/v1/alerts/{sos}", Role.DUTY, None),
        ("POST", f"/api/v1/alerts/{sos}/ack", Role.DUTY, None),
        ("POST", f"/api/v1/alerts/{sos}/notes", Role.RESPONDER, {"text": "已上门"}),
        ("POST", f"/api/v1/alerts/{sos}/resolve", Role.DUTY, {"outcome": "assisted"}),
        ("POST", f"/api/v1/alerts/{smoke}/assign", Role.DUTY, {"responder_id": "v-1"}),
        ("GET", "/api/v1/residents/r1", Role.VIEWER, None),
        ("PUT", "/api/v1/devices/new-1", Role.TECHNICIAN, {"type": "sos_button"}),
        ("POST", "/api/v1/pending-devices/stray-7/adopt", Role.TECHNICIAN, {"type": "pendant"}),
    ]
    for method, path, role, body in calls:
        res = await site.call(method, path, role, json=body)
        assert res.status_code < 300, (path, res.text)
    created = await site.call(
        "POST", "/api/v1/users", Role.ADMIN, json={"name": "newbie", "role": "viewer"}
    )
    token = created.json()["token"]
    assert (await site.call("DELETE", "/api/v1/users/newbie", Role.ADMIN)).status_code == 204

    items = await _audit(site)
    assert _brief(items)[::-1] == [
        ("duty-user", "resident.read", "resident", "r1"),
        ("duty-user", "alert.ack", "alert", sos),
        ("responder-user", "alert.note", "alert", sos),
        ("duty-user", "alert.resolve", "alert", sos),
        ("duty-user", "alert.assign", "alert", smoke),
        ("viewer-user", "resident.read", "resident", "r1"),
        ("technician-user", "device.put", "device", "new-1"),
        ("technician-user", "device.adopt", "device", "stray-7"),
        ("admin-user", "user.create", "user", "newbie"),
        ("admin-user", "user.delete", "user", "newbie"),
    ]
    by_action = {e["action"]: e for e in items}
    card = items[-1]
    assert card["role"] == "duty"
    assert card["detail"] == {"via": "alert", "alert_id": sos, "contacts": True}
    assert card["client_ip"] == "127.0.0.1"
    viewer_read = next(e for e in items if e["actor"] == "viewer-user")
    assert viewer_read["detail"] == {"contacts": False}
    assert by_action["alert.resolve"]["detail"] == {"result": "done", "closed_as": "assisted"}
    assert by_action["alert.assign"]["detail"] == {"responder_id": "v-1", "result": "done"}
    assert by_action["alert.note"]["detail"] == {"result": "done", "chars": 3}
    assert by_action["device.put"]["detail"] == {"change": "created", "type": "sos_button"}
    assert by_action["user.create"]["detail"] == {"role": "viewer"}
    text = json.dumps(items, ensure_ascii=False)
    for secret in (token, *site.tokens.values()):
        assert secret not in text
    for pii in ("13800000000", "高血压", "13900009999", "已上门"):
        assert pii not in text  # the log says whose card was read, not what it says


async def test_refused_actions_are_recorded_with_their_result(site: Site) -> None:
    sos = site.alerts["sos"].id
    await site.call("POST", f"/api/v1/alerts/{sos}/resolve", Role.DUTY, json={"outcome": "other"})
    again = await site.call("POST", f"/api/v1/alerts/{sos}/ack", Role.DUTY)
    assert again.status_code == 409
    missing = await site.call("POST", "/api/v1/alerts/nope/ack", Role.DUTY)
    assert missing.status_code == 404
    acks = await _audit(site, "?action=alert.ack")
    assert [(e["target_id"], e["detail"]["result"]) for e in acks] == [
        ("nope", "not_found"),
        (sos, "closed"),
    ]


async def test_a_list_of_cards_with_contacts_is_recorded_by_whose(site: Site) -> None:
    await site.call("GET", "/api/v1/residents?building=3", Role.DUTY)
    await site.call("GET", "/api/v1/residents", Role.VIEWER)  # no contact details: no PII read
    (entry,) = await _audit(site, "?action=residents.list")
    assert entry["actor"] == "duty-user"
    assert entry["detail"]["ids"] == ["r1"]
    assert entry["detail"]["building"] == "3"


async def test_logins_failures_and_logouts_are_recorded(site: Site) -> None:
    bad = await site.client.post("/login", content="name=duty-user&token=y", headers=FORM)
    assert bad.status_code == 401
    ok = await site.client.post(
        "/login", content=f"name=duty-user&token={site.tokens[Role.DUTY]}", headers=FORM
    )
    assert ok.status_code == 303
    csrf = (await site.client.get("/api/v1/me")).json()["csrf_token"]
    sos = site.alerts["sos"].id
    await site.client.post(f"/api/v1/alerts/{sos}/ack", headers={"X-CSRF-Token": csrf})
    assert (await site.client.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    site.client.cookies.clear()
    items = (await _audit(site))[::-1]
    assert [(e["actor"], e["action"]) for e in items] == [
        ("duty-user", "session.login_failed"),
        ("duty-user", "session.login"),
        ("duty-user", "alert.ack"),
        ("duty-user", "session.logout"),
    ]
    assert items[2]["detail"]["via"] == "session"
    assert all(e["target_kind"] == "session" for e in items if e["action"] != "alert.ack")
    assert site.tokens[Role.DUTY] not in json.dumps(items)


async def test_accept_link_taps_and_page_views_are_recorded(site: Site) -> None:
    alert_id = site.alerts["sos"].id
    tokens = await issue_tokens(site.store, alert_id, ["v-1", "v-2"], NOW, 3600)
    page = await site.client.get(f"/r/{tokens['v-1']}")
    assert page.status_code == 200
    assert "13800000000" in page.text  # the card (phone) is on the page …
    res = await site.client.post(f"/r/{tokens['v-1']}", data={"action": "accept"})
    assert res.status_code == 200
    res = await site.client.post(f"/r/{tokens['v-2']}", json={"action": "decline"})
    assert res.status_code in (200, 409)
    items = (await _audit(site))[::-1]
    assert _brief(items) == [
        ("responder:v-1", "resident.read", "resident", "r1"),  # … so its read is on record
        ("responder:v-1", "alert.accept", "alert", alert_id),
        ("responder:v-2", "alert.decline", "alert", alert_id),
    ]
    assert {e["role"] for e in items} == {"link"}
    assert items[1]["detail"] == {"result": "done"}
    text = json.dumps(items)
    assert not any(t in text for t in tokens.values())


async def test_audit_filters_and_pages(site: Site) -> None:
    for _ in range(3):
        await site.call("GET", "/api/v1/residents/r1", Role.DUTY)
    await site.call("GET", "/api/v1/residents/r2", Role.RESPONDER)
    page = (await site.call("GET", "/api/v1/audit?limit=2", Role.ADMIN)).json()
    assert len(page["items"]) == 2
    assert page["next_offset"] == 2
    rest = (await site.call("GET", "/api/v1/audit?limit=2&offset=2", Role.ADMIN)).json()
    assert len(rest["items"]) == 2
    assert rest["next_offset"] is None
    ids = [e["id"] for e in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert [e["target_id"] for e in await _audit(site, "?actor=responder-user")] == ["r2"]
    r1 = await _audit(site, "?target_kind=resident&target_id=r1")
    assert len(r1) == 3
    since = await site.call("GET", "/api/v1/audit", Role.ADMIN, params={"from": NOW.isoformat()})
    assert len(since.json()["items"]) == 4
    before = await site.call("GET", "/api/v1/audit", Role.ADMIN, params={"to": NOW.isoformat()})
    assert before.json()["items"] == []
    for bad in (
        "?action=alert.explode",
        "?limit=0",
        "?limit=501",
        "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "?from=yesterday",
        "?actor=%00",
    ):
        res = await site.call("GET", f"/api/v1/audit{bad}", Role.ADMIN)
        assert res.status_code == 422, bad
        assert res.json()["message"].startswith("query."), bad


async def test_only_admins_read_the_audit_log(site: Site) -> None:
    for role in Role:
        res = await site.call("GET", "/api/v1/audit", role)
        assert res.status_code == (200 if role is Role.ADMIN else 403), role
    assert (await site.client.get("/api/v1/audit")).status_code == 401
