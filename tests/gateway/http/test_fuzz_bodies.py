"""Hypothesis fuzzing of every write route's request body: arbitrary JSON (and, for the
browser login, arbitrary form bytes) never gets a server error; a refused body gets a 4xx that
names the field at fault (``body.<field>`` in FastAPI's 422, ``detail`` on the accept link).

Runs in process on one event loop against a seeded SQLite store (like the schemathesis test);
each example comes from its own client address, so the per-address rate limits do not turn
the later examples into 429s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.users import Role
from tests.gateway.http.conftest import Built, build_site

EXAMPLES = 60

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)


@dataclass(frozen=True)
class WriteRoute:
    method: str
    path: str  # {alert} is filled in
    fields: tuple[str, ...]  # the body's fields, as the schema names them


WRITE_ROUTES = [
    WriteRoute("POST", "/api/v1/alerts/{alert}/resolve", ("outcome", "note")),
    WriteRoute("POST", "/api/v1/alerts/{alert}/assign", ("responder_id",)),
    WriteRoute("POST", "/api/v1/alerts/{alert}/notes", ("text",)),
    WriteRoute("PUT", "/api/v1/devices/fuzz-1", ("type", "name", "resident_id", "building")),
    WriteRoute("POST", "/api/v1/pending-devices/stray-7/adopt", ("type", "name", "room")),
    WriteRoute("POST", "/api/v1/users", ("name", "role")),
]


def test_every_write_route_is_fuzzed(tmp_path: Path) -> None:
    with _site(tmp_path) as (_loop, built):
        paths = built.app.openapi()["paths"]
        writes = {
            (method.upper(), path)
            for path, ops in paths.items()
            for method in ops
            if method in ("post", "put", "patch") and ops[method].get("requestBody")
        }
    listed = {
        (r.method, r.path.replace("{alert}", "{alert_id}").replace("fuzz-1", "{device_id}"))
        for r in WRITE_ROUTES
    }
    listed = {(m, p.replace("stray-7", "{device_id}")) for m, p in listed}
    assert writes == listed


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, Built]]:
    with _site(tmp_path) as pair:
        yield pair


class _site:
    def __init__(self, tmp_path: Path) -> None:
        self._url = f"sqlite:///{tmp_path}/fuzz.db"

    def __enter__(self) -> tuple[asyncio.AbstractEventLoop, Built]:
        self.loop = asyncio.new_event_loop()
        self.built = self.loop.run_until_complete(build_site(self._url))
        return self.loop, self.built

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.built.close())
        self.loop.close()


_addresses = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))


def _json(body: object) -> dict[str, Any]:
    """As a sloppy client sends it: NaN and Infinity included (not strict JSON)."""
    return {
        "content": json.dumps(body),
        "headers": {"Content-Type": "application/json"},
    }


async def _send(built: Built, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=built.app, client=(next(_addresses), 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path, **kwargs)


def _check_api_answer(res: httpx.Response, body: object, fields: tuple[str, ...]) -> None:
    assert res.status_code < 500, res.text
    if res.status_code != 422:
        return
    answer = res.json()
    assert answer["message"], answer
    for error in answer["detail"]:
        loc = error["loc"]
        assert loc[0] == "body", error
        if isinstance(body, dict):
            # A field of the schema (missing or wrong), or a key the client sent (unknown).
            assert len(loc) >= 2, error
            assert loc[1] in fields or loc[1] in body, error
            assert f"body.{loc[1]}" in answer["message"]


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_api_write_bodies(site: tuple[asyncio.AbstractEventLoop, Built], route: WriteRoute) -> None:
    loop, built = site
    path = route.path.replace("{alert}", built.alerts["water"].id)
    auth = {"Authorization": f"Bearer {built.tokens[Role.ADMIN]}"}
    bodies = json_values | st.dictionaries(
        st.sampled_from(route.fields) | st.text(max_size=8), json_values, max_size=4
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies)
    def check(body: object) -> None:
        req = _json(body)
        req["headers"].update(auth)
        res = loop.run_until_complete(_send(built, route.method, path, **req))
        _check_api_answer(res, body, route.fields)

    check()


def test_api_bodies_that_are_not_json(site: tuple[asyncio.AbstractEventLoop, Built]) -> None:
    loop, built = site
    auth = {"Authorization": f"Bearer {built.tokens[Role.ADMIN]}"}
    path = f"/api/v1/alerts/{built.alerts['water'].id}/notes"

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(
        raw=st.binary(max_size=200),
        content_type=st.sampled_from(["application/json", "text/plain", ""]),
    )
    def check(raw: bytes, content_type: str) -> None:
        headers = {**auth, "Content-Type": content_type} if content_type else auth
        res = loop.run_until_complete(_send(built, "POST", path, content=raw, headers=headers))
        assert res.status_code < 500, res.text
        if res.status_code == 422:
            assert res.json()["message"].startswith("body")

    check()


def test_accept_link_bodies(site: tuple[asyncio.AbstractEventLoop, Built]) -> None:
    loop, built = site
    bodies = json_values | st.dictionaries(
        st.sampled_from(["action", "x"]), json_values, max_size=3
    )

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(body=bodies, token=st.sampled_from(["a" * 32, "short", "scgw_" + "x" * 40]))
    def check(body: object, token: str) -> None:
        res = loop.run_until_complete(_send(built, "POST", f"/r/{token}", **_json(body)))
        assert res.status_code < 500, res.text
        answer = res.json()
        if res.status_code == 422:
            assert answer["status"] == "bad_action"
            assert "action" in answer["detail"]  # names the field
        else:
            # A well-formed action on a token nobody issued.
            assert res.status_code == 404, answer
            assert isinstance(body, dict)
            assert str(body.get("action", "")).strip().lower() in ("accept", "decline")

    check()


def test_login_form_bodies(site: tuple[asyncio.AbstractEventLoop, Built]) -> None:
    loop, built = site
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(raw=st.binary(max_size=6000))
    def check(raw: bytes) -> None:
        res = loop.run_until_complete(_send(built, "POST", "/login", content=raw, headers=form))
        assert res.status_code in (401, 429), res.text  # never in, never a crash
        assert "set-cookie" not in res.headers

    check()


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"Infinity", "application/json"),  # found by the fuzzer: the 422 failed to render
        (b'{"text": NaN}', "application/json"),
        (b"\x80", ""),  # found by the fuzzer: a non-UTF-8 input broke the 422
    ],
)
def test_bodies_the_fuzzer_found_get_a_422(
    site: tuple[asyncio.AbstractEventLoop, Built], raw: bytes, content_type: str
) -> None:
    loop, built = site
    headers = {"Authorization": f"Bearer {built.tokens[Role.ADMIN]}"}
    if content_type:
        headers["Content-Type"] = content_type
    path = f"/api/v1/alerts/{built.alerts['water'].id}/notes"
    res = loop.run_until_complete(_send(built, "POST", path, content=raw, headers=headers))
    assert res.status_code == 422, res.text
    assert res.json()["message"].startswith("body")


def test_a_json_body_that_is_not_text_is_a_400(
    site: tuple[asyncio.AbstractEventLoop, Built],
) -> None:
    loop, built = site
    headers = {
        "Authorization": f"Bearer {built.tokens[Role.ADMIN]}",
        "Content-Type": "application/json",
    }
    path = f"/api/v1/alerts/{built.alerts['water'].id}/notes"
    res = loop.run_until_complete(_send(built, "POST", path, content=b"\xff\xfe{", headers=headers))
    assert res.status_code == 400
    assert "parsing the body" in res.json()["detail"]
