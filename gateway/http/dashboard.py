"""The duty-desk dashboard at ``/``: one HTML page, one script, one stylesheet, all served from
the package (no CDN: the station's network may reach nothing but the gateway).

``/`` needs a session (else it redirects to ``/login``); the assets are public, they hold no
data. Everything is sent with a strict Content-Security-Policy: scripts and styles only from
here, connections only back to here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.http.api.deps import SESSION_COOKIE, get_console
from gateway.users import hash_secret, looks_like_secret

ASSETS: Final[dict[str, str]] = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@cache
def asset(name: str) -> bytes:
    return resources.files("gateway.http").joinpath("static", name).read_bytes()


def dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        user = None
        if session_id and looks_like_secret(session_id):
            console = get_console(request)
            user = await console.store.session_user(hash_secret(session_id), console.now())
        if user is None:
            lang = request.query_params.get("lang", "zh")
            return RedirectResponse(f"/login?lang={'en' if lang == 'en' else 'zh'}", 303)
        return Response(
            asset("index.html"),
            media_type="text/html; charset=utf-8",
            headers={**HEADERS, "Cache-Control": "no-store"},
        )

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
        # no-cache: revalidated every load, so an upgraded gateway never runs a stale script.
        return Response(
            asset(name), media_type=media, headers={**HEADERS, "Cache-Control": "no-cache"}
        )

    return router
