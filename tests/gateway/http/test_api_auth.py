"""Every /api/v1 route, every role: anonymous → 401, wrong role → 403, right role → through.
And the two ways in: a Bearer token, or the dashboard's session cookie with its CSRF header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.users import ROLE_PERMS, Perm, Role
from tests.gateway.http.conftest import Site


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {alert} and {pending} are filled in per test
    perm: Perm | None  # None: any logged-in user
    body: dict[str, Any] | None = None


ROUTES = [
    Route("GET", "/api/v1/alerts", Perm.READ),
    Route("GET", "/api/v1/alerts/stream", Perm.READ),
    Route("GET", "/api/v1/alerts/{alert}", Perm.READ),
    Route("POST", "/api/v1/alerts/{alert}/ack", Perm.ALERT_ACT),
    Route("POST", "/api/v1/alerts/{alert}/resolve", Perm.ALERT_ACT, {"outcome": "assisted"}),
    Route("POST", "/api/v1/alerts/{alert}/assign", Perm.ALERT_ASSIGN, {"responder_id": "v-1"}),
    Route("POST", "/api/v1/alerts/{alert}/notes", Perm.ALERT_ACT, {"text": "called her"}),
    Route("GET", "/api/v1/devices", Perm.READ),
    Route("GET", "/api/v1/devices/btn-1", Perm.READ),
    Route("PUT", "/api/v1/devices/new-1", Perm.DEVICES, {"type": "sos_button"}),
    Route("GET", "/api/v1/devices/th-1/readings", Perm.READ),
    Route("GET", "/api/v1/pending-devices", Perm.READ),
    Route("POST", "/api/v1/pending-devices/stray-7/adopt", Perm.DEVICES, {"type": "pendant"}),
    Route("GET", "/api/v1/residents", Perm.READ),
    Route("GET", "/api/v1/residents/r1", Perm.READ),
    Route("GET", "/api/v1/responders", Perm.READ),
    Route("GET", "/api/v1/stats/response", Perm.READ),
    Route("GET", "/api/v1/me", None),
    Route("GET", "/api/v1/meta", None),
    Route("GET", "/api/v1/users", Perm.USERS),
    Route("POST", "/api/v1/users", Perm.USERS, {"name": "newbie", "role": "viewer"}),
    Route("DELETE", "/api/v1/users/viewer-user", Perm.USERS),
    Route("GET", "/api/v1/audit", Perm.AUDIT),
]


def _template(path: str) -> str:
    return (
        path.replace("{alert}", "{alert_id}")
        .replace("btn-1", "{device_id}")
        .replace("new-1", "{device_id}")
        .replace("th-1", "{device_id}")
        .replace("stray-7", "{device_id}")
        .replace("r1", "{resident_id}")
        .replace("viewer-user", "{name}")
    )


def test_the_matrix_covers_every_api_route(site: Site) -> None:
    paths = site.app.openapi()["paths"]
    served = {
        (method.upper(), path)
        for path, ops in paths.items()
        if path.startswith("/api/v1")
        for method in ops
    }
    listed = {(r.method, _template(r.path)) for r in ROUTES}
    assert served == listed


def _path(site: Site, route: Route) -> str:
    return route.path.replace("{alert}", site.alerts["sos"].id)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_anonymous_and_bad_tokens_get_401(site: Site, route: Route) -> None:
    path = _path(site, route)
    for headers in (
        {},
        {"Authorization": "Bearer scgw_not-a-real-token-at-all"},
        {"Authorization": "Bearer x"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        res = await site.client.request(route.method, path, json=route.body, headers=headers)
        assert res.status_code == 401, (headers, res.text)
        assert res.headers["www-authenticate"] == "Bearer"
        assert res.json()["detail"]


@pytest.mark.parametrize("role", list(Role))
async def test_route_by_role_matrix(site: Site, role: Role) -> None:
    for route in ROUTES:
        allowed = route.perm is None or route.perm in ROLE_PERMS[role]
        if allowed and route.path.endswith("/stream"):
            continue  # an open stream never ends here; tests/gateway/http/test_stream.py
        res = await site.call(route.method, _path(site, route), role, json=route.body)
        if allowed:
            assert res.status_code not in (401, 403, 422), (role, route, res.text)
            assert res.status_code < 500, (role, route, res.text)
        else:
            assert res.status_code == 403, (role, route, res.text)
            assert f"role {role.value} may not" in res.json()["detail"]


async def test_deleted_user_is_locked_out_at_once(site: Site) -> None:
    assert (await site.call("GET", "/api/v1/me", Role.VIEWER)).status_code == 200
    res = await site.call("DELETE", "/api/v1/users/viewer-user", Role.ADMIN)
    assert res.status_code == 204
    assert (await site.call("GET", "/api/v1/me", Role.VIEWER)).status_code == 401


async def _login(site: Site, role: Role) -> str:
    res = await site.client.post(
        "/login",
        content=f"name={role.value}-user&token={site.tokens[role]}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 303, res.text
    cookie = res.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    me = (await site.client.get("/api/v1/me")).json()
    assert me["via"] == "session"
    return str(me["csrf_token"])


async def test_session_cookie_reads_but_acts_only_with_the_csrf_header(site: Site) -> None:
    csrf = await _login(site, Role.DUTY)
    alert_id = site.alerts["sos"].id
    assert (await site.client.get(f"/api/v1/alerts/{alert_id}")).status_code == 200

    # A cross-site form post would carry the cookie but cannot know the token.
    res = await site.client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert res.status_code == 403
    assert "X-CSRF-Token" in res.json()["detail"]
    res = await site.client.post(
        f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": "0" * 64}
    )
    assert res.status_code == 403
    res = await site.client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf})
    assert res.status_code == 200
    assert res.json()["acked_by"] == "user:duty-user"


async def test_login_failures_and_logout(site: Site) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = await site.client.post(
        "/login", content="name=duty-user&token=scgw_wrongwrongwrong", headers=form
    )
    assert bad.status_code == 401
    assert "用户名或令牌不正确" in bad.text
    other_user = await site.client.post(
        "/login", content=f"name=viewer-user&token={site.tokens[Role.DUTY]}", headers=form
    )
    assert other_user.status_code == 401  # the token belongs to someone else
    foreign = await site.client.post(
        "/login",
        content=f"name=duty-user&token={site.tokens[Role.DUTY]}",
        headers={**form, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403

    csrf = await _login(site, Role.DUTY)
    assert (await site.client.post("/logout")).status_code == 403  # no CSRF header
    assert (await site.client.post("/logout", headers={"X-CSRF-Token": csrf})).status_code == 204
    site.client.cookies.clear()
    assert (await site.client.get("/api/v1/me")).status_code == 401


async def test_login_page_and_dashboard_redirect(site: Site) -> None:
    page = await site.client.get("/login")
    assert page.status_code == 200
    assert "值班台登录" in page.text
    assert "Duty desk login" in (await site.client.get("/login?lang=en")).text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    res = await site.client.get("/")
    assert res.status_code == 303
    assert res.headers["location"].startswith("/login")
    await _login(site, Role.VIEWER)
    home = await site.client.get("/")
    assert home.status_code == 200
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in home.text
    for name in ("app.js", "app.css", "icon.svg"):
        asset = await site.client.get(f"/static/{name}")
        assert asset.status_code == 200, name
    assert (await site.client.get("/static/../../etc/passwd")).status_code == 404
    assert (await site.client.get("/static/secret.py")).status_code == 404


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_login_is_rate_limited_per_address(site: Site) -> None:
    # Different names each time: only the address limit (10 a minute) applies.
    codes = []
    for i in range(12):
        res = await site.client.post("/login", content=f"name=x{i}&token=y", headers=FORM)
        codes.append(res.status_code)
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    res = await site.client.post(
        "/login", content=f"name=duty-user&token={site.tokens[Role.DUTY]}", headers=FORM
    )
    assert res.status_code == 429  # the right token too: the address is cut off
    assert int(res.headers["retry-after"]) >= 1
    assert "尝试次数过多" in res.text
    metrics = site.gateway.metrics
    assert metrics.value("scgw_http_rate_limited_total", route="login", by="ip") == 3


async def _login_from(site: Site, address: str, name: str, token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=site.app, client=(address, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/login", content=f"name={name}&token={token}", headers=FORM)


async def test_login_is_rate_limited_per_user_name_from_any_address(site: Site) -> None:
    wrong = "scgw_wrongwrongwrongwrong"
    codes = [
        (await _login_from(site, f"10.0.0.{i}", "admin-user", wrong)).status_code
        for i in range(1, 7)
    ]
    assert codes == [401] * 5 + [429]  # five failures for one name, each from a new address
    # The name is blocked, even with its right token, until the bucket refills …
    res = await _login_from(site, "10.0.1.1", "admin-user", site.tokens[Role.ADMIN])
    assert res.status_code == 429
    assert 1 <= int(res.headers["retry-after"]) <= 12  # one try back every 12 s
    # … while another user logs in fine from that address.
    ok = await _login_from(site, "10.0.1.1", "duty-user", site.tokens[Role.DUTY])
    assert ok.status_code == 303
    metrics = site.gateway.metrics
    assert metrics.value("scgw_http_rate_limited_total", route="login", by="user") == 2


async def test_a_right_token_does_not_use_up_the_name(site: Site) -> None:
    for _ in range(8):
        res = await site.client.post(
            "/login", content=f"name=duty-user&token={site.tokens[Role.DUTY]}", headers=FORM
        )
        assert res.status_code == 303
