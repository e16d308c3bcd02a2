"""The dashboard's browser login: ``GET /login`` (the form), ``POST /login`` (user name and API
token → a session cookie), ``POST /logout``.

The cookie holds a random session id (its hash is in the database); it is ``HttpOnly`` (page
scripts never see it), ``SameSite=Strict`` (never sent on a request started by another site)
and ``Secure`` when the request came over HTTPS. State-changing API calls made with it also
need the ``X-CSRF-Token`` header (see ``api/deps.py``). ``POST /login`` and ``/logout``
refuse a foreign ``Origin`` so no other site can log a browser in or out.

Attempts are rate-limited twice: per client address (every attempt counts) and per user name
(failed attempts count, from any address), so neither one busy address nor many addresses
guessing at one name get far. Over the limit: 429 with ``Retry-After``, counted in
``scgw_http_rate_limited_total{route="login"}``. Logins, failed logins and logouts go to the
audit log (never the token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from html import escape
from typing import Final, Literal
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import Counter

from gateway.audit import AuditAction, Auditor
from gateway.http.api.deps import CSRF_HEADER, SESSION_COOKIE, client_ip, get_console
from gateway.http.limits import KeyedBucket
from gateway.users import (
    csrf_matches,
    hash_secret,
    looks_like_secret,
    new_session_id,
)

SESSION_TTL: Final = timedelta(hours=12)  # a shift and a bit; then log in again
MAX_FORM: Final = 4096
AUDIT_NAME_MAX: Final = 64  # a failed login's typed name, as kept in the audit log

Lang = Literal["zh", "en"]

PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    # Not no-referrer: with it, browsers send "Origin: null" on the form post, which the
    # same-origin check below must refuse.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}

_T: Final[dict[str, tuple[str, str]]] = {
    "title": ("社区服务站值班台 · 登录", "Duty desk · log in"),
    "heading": ("值班台登录", "Duty desk login"),
    "name": ("用户名", "User name"),
    "token": (
        "令牌（scgw users add 给出的 API 令牌）",
        "Token (the API token from scgw users add)",
    ),
    "submit": ("登录", "Log in"),
    "bad": ("用户名或令牌不正确。", "Wrong user name or token."),
    "too_many": ("尝试次数过多，请稍后再试。", "Too many attempts; try again in a minute."),
    "foreign": ("请求来源不被允许。", "Request from another site refused."),
    "switch": ("English", "中文"),
}

_STYLE: Final = """
*{box-sizing:border-box}body{margin:0;font:17px/1.45 system-ui,-apple-system,"PingFang SC",
"Noto Sans CJK SC","Microsoft YaHei",sans-serif;background:#eef1f4;color:#111}
main{max-width:24rem;margin:8vh auto;padding:1rem}.card{background:#fff;border-radius:12px;
padding:1.3rem;box-shadow:0 1px 3px #0002}h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:.8rem 0 .3rem;color:#444;font-size:.9rem}
input{width:100%;font-size:1.1rem;padding:.6rem;border:1px solid #bbb;border-radius:8px}
button{margin-top:1.2rem;width:100%;min-height:3rem;border:0;border-radius:10px;
background:#1565c0;color:#fff;font-size:1.15rem;font-weight:700}
.err{color:#c62828;font-weight:600}.switch{text-align:right;font-size:.9rem}a{color:#1565c0}
"""


def _t(key: str, lang: Lang) -> str:
    zh, en = _T[key]
    return en if lang == "en" else zh


def _lang(request: Request) -> Lang:
    return "en" if request.query_params.get("lang", "").lower().startswith("en") else "zh"


def login_page(lang: Lang, error: str | None = None, name: str = "") -> str:
    other = "zh" if lang == "en" else "en"
    err = f'<p class="err" role="alert">{escape(error)}</p>' if error else ""
    return (
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex,nofollow">'
        f"<title>{escape(_t('title', lang))}</title><style>{_STYLE}</style></head><body><main>"
        f'<p class="switch"><a href="/login?lang={other}">{_t("switch", lang)}</a></p>'
        f'<div class="card"><h1>{escape(_t("heading", lang))}</h1>{err}'
        f'<form method="post" action="/login?lang={lang}">'
        f'<label for="name">{escape(_t("name", lang))}</label>'
        f'<input id="name" name="name" autocomplete="username" required value="{escape(name)}">'
        f'<label for="token">{escape(_t("token", lang))}</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        f'<button type="submit">{escape(_t("submit", lang))}</button></form></div>'
        "</main></body></html>"
    )


def same_origin(request: Request) -> bool:
    """No Origin header (an old browser, curl) is allowed; a foreign one is not."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def _is_https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip().lower() == "https"


async def _form(request: Request) -> dict[str, str] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def _auditor(request: Request) -> Auditor | None:
    return getattr(request.app.state, "auditor", None)


def _count_limited(request: Request, by: str) -> None:
    counter: Counter | None = getattr(request.app.state, "rate_limited", None)
    if counter is not None:
        counter.labels(route="login", by=by).inc()


def session_router(
    *,
    per_minute: int = 10,
    per_user_per_minute: int = 5,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """``per_minute`` attempts per client address; ``per_user_per_minute`` failed attempts
    per user name (a burst of that many, then one more each 60/N seconds)."""
    router = APIRouter(tags=["session"], include_in_schema=False)
    by_ip = KeyedBucket(per_minute=per_minute, burst=per_minute, clock=clock)
    by_user = KeyedBucket(per_minute=per_user_per_minute, burst=per_user_per_minute, clock=clock)

    def page(lang: Lang, status: int, error: str | None = None, name: str = "") -> HTMLResponse:
        return HTMLResponse(login_page(lang, error, name), status_code=status, headers=PAGE_HEADERS)

    def too_many(lang: Lang, wait: int, name: str) -> HTMLResponse:
        response = page(lang, 429, _t("too_many", lang), name)
        response.headers["Retry-After"] = str(wait)
        return response

    @router.get("/login", response_class=HTMLResponse)
    async def show(request: Request) -> Response:
        return page(_lang(request), 200)

    @router.post("/login")
    async def login(request: Request) -> Response:
        lang = _lang(request)
        if not same_origin(request):
            return page(lang, 403, _t("foreign", lang))
        ip = client_ip(request)
        if wait := by_ip.take(ip or "unknown"):
            _count_limited(request, "ip")
            return too_many(lang, wait, "")
        form = await _form(request)
        name = (form or {}).get("name", "").strip()
        token = (form or {}).get("token", "").strip()
        user_key = name.casefold()[:AUDIT_NAME_MAX]
        if wait := by_user.retry_after(user_key):
            _count_limited(request, "user")
            return too_many(lang, wait, name)
        console = get_console(request)
        auditor = _auditor(request)
        user = None
        if name and looks_like_secret(token):
            user = await console.store.user_by_name_and_token(name, hash_secret(token))
        if user is None:
            by_user.spend(user_key)
            if auditor is not None:
                # What was typed as the name (cut, control characters dropped), never the token.
                typed = "".join(c for c in name[:AUDIT_NAME_MAX] if c.isprintable())
                await auditor.record(
                    actor=typed or "-",
                    role="-",
                    action=AuditAction.LOGIN_FAILED,
                    target_kind="session",
                    client_ip=ip,
                )
            return page(lang, 401, _t("bad", lang), name)
        if auditor is not None:
            await auditor.record(
                actor=user.name,
                role=user.role.value,
                action=AuditAction.LOGIN,
                target_kind="session",
                client_ip=ip,
            )
        session_id = new_session_id()
        now = console.now()
        await console.store.create_session(
            hash_secret(session_id), user.name, now, now + SESSION_TTL
        )
        response = RedirectResponse(f"/?lang={lang}", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_is_https(request),
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not same_origin(request):
            return Response(status_code=403)
        if session_id and looks_like_secret(session_id):
            if not csrf_matches(session_id, request.headers.get(CSRF_HEADER)):
                return Response(status_code=403)
            console = get_console(request)
            session_hash = hash_secret(session_id)
            user = await console.store.session_user(session_hash, console.now())
            await console.store.delete_session(session_hash)
            auditor = _auditor(request)
            if user is not None and auditor is not None:
                await auditor.record(
                    actor=user.name,
                    role=user.role.value,
                    action=AuditAction.LOGOUT,
                    target_kind="session",
                    client_ip=client_ip(request),
                )
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return router
