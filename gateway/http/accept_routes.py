"""``/r/{token}``: the page a volunteer opens from a notification, and the tap that answers.

GET shows the alert and two buttons and never acts: DingTalk, WeChat and friends fetch links
to build previews. POST acts once (form ``action=accept|decline``, or JSON
``{"action": …}``, or ``?action=`` when the body has none). Answers: 200 done, 404 unknown
link, 409 used (or the alert was taken by someone else, or closed), 410 expired, 422 bad
action, 429 too many requests from one address. HTML for browsers, JSON for JSON requests.

The page is phone-sized and self-contained (no scripts, fonts or images: it must load on a
weak signal in a stairwell). It is sent with ``no-store`` and ``no-referrer``: the token in
its URL is the credential.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import Counter

from alerts.accept import AcceptService, ActResult, ActStatus, LinkView
from alerts.messages import (
    Lang,
    address_of,
    format_time,
    kind_name,
    label,
    priority_word,
)
from alerts.models import AcceptToken, TokenStatus
from gateway.audit import AuditAction, Auditor
from gateway.rate_limit import DeviceRateLimiter

MAX_BODY = 4096  # an action is a few bytes; anything big is not a tap

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}

ACT_HTTP_STATUS: dict[ActStatus, int] = {
    ActStatus.DONE: 200,
    ActStatus.UNKNOWN: 404,
    ActStatus.USED: 409,
    ActStatus.TAKEN: 409,
    ActStatus.CLOSED: 409,
    ActStatus.EXPIRED: 410,
    ActStatus.BAD_ACTION: 422,
}
VIEW_HTTP_STATUS: dict[TokenStatus, int] = {
    TokenStatus.OK: 200,
    TokenStatus.UNKNOWN: 404,
    TokenStatus.USED: 409,
    TokenStatus.EXPIRED: 410,
}

# (zh, en)
_T: dict[str, tuple[str, str]] = {
    "page_title": ("社区紧急告警", "Community alert"),
    "accept_btn": ("接单，马上前往", "Accept: I'm going"),
    "decline_btn": ("无法前往", "Decline: I can't go"),
    "decline_hint": (
        "无法前往请点“无法前往”，系统会立即通知下一位。",
        "If you can't go, tap Decline: the next helper is called at once.",
    ),
    "unknown": ("链接无效。", "This link is not valid."),
    "expired": (
        "链接已过期。如仍需帮助，请联系社区服务站。",
        "This link has expired. Call the service station if help is still needed.",
    ),
    "used": ("此链接已使用。", "This link has already been used."),
    "used_accept": ("您已接单，请尽快前往。", "You accepted this alert: please go now."),
    "used_decline": ("您已选择无法前往。", "You declined this alert."),
    "done_accept": (
        "已接单！请尽快前往，并保持电话畅通。",
        "Accepted! Please go now and keep your phone on.",
    ),
    "done_decline": (
        "已记录：无法前往。系统正在通知下一位。",
        "Declined. The next helper is being called.",
    ),
    "taken": (
        "此告警已由他人接单，谢谢！",
        "Someone else has already accepted this alert. Thank you!",
    ),
    "closed": ("此告警已结束，无需前往。", "This alert is closed; no need to go."),
    "bad_action": (
        "操作无效：请点击“接单”或“无法前往”。",
        "Unknown action: use accept or decline.",
    ),
    "too_many": ("请求过于频繁，请稍后再试。", "Too many requests; try again shortly."),
    "too_big": ("请求过大。", "Request too large."),
    "switch": ("English", "中文"),
}


def _t(key: str, lang: Lang) -> str:
    zh, en = _T[key]
    return en if lang == "en" else zh


def _lang(request: Request) -> Lang:
    return "en" if request.query_params.get("lang", "").lower().startswith("en") else "zh"


def _bi(key: str, lang: Lang) -> str:
    """Chinese with the English below (default page), or English alone (``?lang=en``)."""
    zh, en = _T[key]
    if lang == "en":
        return escape(en)
    return f'{escape(zh)}<span class="en">{escape(en)}</span>'


_STYLE = """
*{box-sizing:border-box}body{margin:0;font:17px/1.45 system-ui,-apple-system,"PingFang SC",
"Microsoft YaHei",sans-serif;background:#f4f4f4;color:#111}main{max-width:30rem;margin:0 auto;
padding:1rem}.card{background:#fff;border-radius:12px;padding:1rem 1.1rem;margin-bottom:1rem}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:999px;color:#fff;font-weight:600}
.P1{background:#c62828}.P2{background:#ef6c00}.P3{background:#546e7a}h1{font-size:1.6rem;
margin:.5rem 0}.en{display:block;font-size:.8em;color:#666;font-weight:400}dl{margin:0}
dt{color:#666;font-size:.85em;margin-top:.6rem}dd{margin:0;font-size:1.1rem;font-weight:600}
a{color:#1565c0}form{margin:0 0 .8rem}button{width:100%;min-height:3.6rem;border:0;
border-radius:12px;font-size:1.25rem;font-weight:700;color:#fff;padding:.6rem}
button .en{color:#eee}.accept{background:#2e7d32}.decline{background:#757575}
.msg{font-size:1.2rem;font-weight:600}.ok{color:#2e7d32}.warn{color:#c62828}
.hint{color:#555;font-size:.9rem}.switch{text-align:right;font-size:.9rem}
"""


def _page(lang: Lang, inner: str, *, switch_to: str | None = None) -> str:
    switch = ""
    if switch_to is not None:
        switch = f'<p class="switch"><a href="{escape(switch_to)}">{_t("switch", lang)}</a></p>'
    return (
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex,nofollow">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(_t('page_title', lang))}</title><style>{_STYLE}</style></head>"
        f"<body><main>{switch}{inner}</main></body></html>"
    )


def _message_card(text_html: str, css: str) -> str:
    return f'<div class="card"><p class="msg {css}">{text_html}</p></div>'


def _row(key: str, value_html: str, lang: Lang) -> str:
    return f"<dt>{_bi_label(key, lang)}</dt><dd>{value_html}</dd>"


def _bi_label(key: str, lang: Lang) -> str:
    if lang == "en":
        return escape(label(key, "en"))
    return f"{escape(label(key, 'zh'))} · {escape(label(key, 'en'))}"


def _alert_html(link: LinkView, lang: Lang) -> str:
    assert link.view is not None
    alert, resident, device = link.view.alert, link.view.resident, link.view.device
    p = alert.priority
    zh_kind, en_kind = kind_name(alert.kind, "zh"), kind_name(alert.kind, "en")
    kind_html = (
        escape(en_kind)
        if lang == "en"
        else f'{escape(zh_kind)}<span class="en">{escape(en_kind)}</span>'
    )
    badge = (
        escape(priority_word(p, "en"))
        if lang == "en"
        else (f"{escape(priority_word(p, 'zh'))} · {escape(priority_word(p, 'en'))}")
    )
    rows = []
    if resident is not None:
        name = resident.name + (" (lives alone)" if lang == "en" else "（独居）") * bool(
            resident.lives_alone
        )
        rows.append(_row("resident", escape(name), lang))
    address = address_of(resident, device, lang)
    if address:
        rows.append(_row("address", escape(address), lang))
    if resident is not None and resident.phone:
        tel = "".join(c for c in resident.phone if c.isdigit() or c == "+")
        rows.append(
            _row("phone", f'<a href="tel:{escape(tel)}">{escape(resident.phone)}</a>', lang)
        )
    if resident is not None and resident.medical_notes:
        rows.append(_row("medical", escape(resident.medical_notes), lang))
    rows.append(_row("time", escape(format_time(alert.opened_at)), lang))
    return (
        f'<div class="card"><span class="badge {p.value}">{badge}</span>'
        f"<h1>{kind_html}</h1><dl>{''.join(rows)}</dl></div>"
    )


def _buttons(lang: Lang, decline_first: bool) -> str:
    # No ``action`` attribute: the form posts back to this very URL (token and ?lang kept).
    accept = (
        '<form method="post"><input type="hidden" name="action" value="accept">'
        f'<button class="accept" type="submit">{_bi("accept_btn", lang)}</button></form>'
    )
    decline = (
        '<form method="post"><input type="hidden" name="action" value="decline">'
        f'<button class="decline" type="submit">{_bi("decline_btn", lang)}</button></form>'
    )
    forms = decline + accept if decline_first else accept + decline
    return f'<div class="card">{forms}<p class="hint">{_bi("decline_hint", lang)}</p></div>'


def _used_key(record_action: str | None) -> str:
    if record_action == "accept":
        return "used_accept"
    if record_action == "decline":
        return "used_decline"
    return "used"


def view_html(link: LinkView, lang: Lang, *, decline_first: bool, switch_to: str) -> str:
    if link.status is TokenStatus.UNKNOWN:
        return _page(lang, _message_card(_bi("unknown", lang), "warn"))
    if link.status is TokenStatus.EXPIRED:
        return _page(lang, _message_card(_bi("expired", lang), "warn"))
    if link.status is TokenStatus.USED:
        key = _used_key(link.token.action if link.token else None)
        return _page(lang, _message_card(_bi(key, lang), "ok" if key != "used" else "warn"))
    if link.view is None:  # the token is fine but its alert is gone (purged)
        return _page(lang, _message_card(_bi("closed", lang), "warn"))
    inner = _alert_html(link, lang)
    if link.usable:
        inner += _buttons(lang, decline_first)
    elif link.taken_by_other:
        inner += _message_card(_bi("taken", lang), "warn")
    else:
        inner += _message_card(_bi("closed", lang), "warn")
    return _page(lang, inner, switch_to=switch_to)


def _act_key(result: ActResult) -> str:
    match result.status:
        case ActStatus.DONE:
            return "done_accept" if result.action == "accept" else "done_decline"
        case ActStatus.USED:
            return _used_key(result.token.action if result.token else None)
        case ActStatus.UNKNOWN:
            return "unknown"
        case ActStatus.EXPIRED:
            return "expired"
        case ActStatus.TAKEN:
            return "taken"
        case ActStatus.CLOSED:
            return "closed"
        case ActStatus.BAD_ACTION:
            return "bad_action"


def _wants_json(request: Request, body_was_json: bool) -> bool:
    if body_was_json:
        return True
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


async def _read_body(request: Request) -> bytes | None:
    """The body up to ``MAX_BODY`` bytes; None when it is bigger."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def _parse_action(content_type: str, body: bytes) -> tuple[str | None, str | None]:
    """(action, problem). The action comes from a JSON object or a urlencoded form."""
    if _is_json(content_type):
        if not body.strip():
            return None, None
        try:
            data = json.loads(body)
        except ValueError:
            return None, "body is not valid JSON"
        if not isinstance(data, dict):
            return None, 'JSON body must be an object like {"action": "accept"}'
        value = data.get("action")
        if value is None:
            return None, None
        if not isinstance(value, str):
            return None, "action must be a string"
        return value, None
    if content_type in ("", "application/x-www-form-urlencoded", "text/plain"):
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        values = fields.get("action")
        return (values[0] if values else None), None
    return None, (
        f"unsupported content type {content_type!r}: send a form "
        "(application/x-www-form-urlencoded) or JSON"
    )


# The link is the volunteer's credential: the audit log names them by responder id.
LINK_ROLE = "link"


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _audit(
    request: Request,
    token: AcceptToken,
    action: AuditAction,
    target_kind: str,
    target_id: str | None,
    **detail: object,
) -> None:
    """Into the audit log when the app has one (``gateway/http/site.py`` sets it)."""
    auditor: Auditor | None = getattr(request.app.state, "auditor", None)
    if auditor is None:
        return
    await auditor.record(
        actor=f"responder:{token.responder_id}",
        role=LINK_ROLE,
        action=action,
        target_kind=target_kind,
        target_id=target_id,
        client_ip=_client_ip(request),
        detail=detail,
    )


def accept_router(
    service: AcceptService,
    *,
    per_minute: int = 30,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """The ``/r/{token}`` routes. ``per_minute`` requests per client address (GET and POST
    together) before 429: plenty for a person, a brake on scripts. Behind a reverse proxy
    run uvicorn with ``--proxy-headers`` so the client address is the phone's, not the
    proxy's."""
    router = APIRouter(tags=["accept links"])
    limiter = DeviceRateLimiter(rate=per_minute / 60.0, burst=per_minute, clock=clock)
    retry_after = str(max(1, round(60 / per_minute))) if per_minute > 0 else "60"

    def limited(request: Request, as_json: bool) -> Response | None:
        host = request.client.host if request.client else "unknown"
        if limiter.allow(host):
            return None
        counter: Counter | None = getattr(request.app.state, "rate_limited", None)
        if counter is not None:
            counter.labels(route="accept_link", by="ip").inc()
        headers = {**_HEADERS, "Retry-After": retry_after}
        lang = _lang(request)
        if as_json:
            return JSONResponse(
                {"ok": False, "status": "rate_limited", "message": _t("too_many", lang)},
                status_code=429,
                headers=headers,
            )
        page = _page(lang, _message_card(_bi("too_many", lang), "warn"))
        return HTMLResponse(page, status_code=429, headers=headers)

    @router.get("/r/{token}", response_class=HTMLResponse, summary="The accept page (never acts)")
    async def show(token: str, request: Request) -> Response:
        wants_json = _wants_json(request, False)
        if (blocked := limited(request, wants_json)) is not None:
            return blocked
        lang = _lang(request)
        link = await service.view(token)
        status = VIEW_HTTP_STATUS[link.status]
        resident = link.view.resident if link.view is not None else None
        shows_card = link.status is TokenStatus.OK and resident is not None and not wants_json
        if shows_card and link.token is not None and resident is not None:
            # The page shows the resident's phone and medical notes: a read of the card.
            await _audit(
                request,
                link.token,
                AuditAction.RESIDENT_READ,
                "resident",
                resident.resident_id,
                via="accept_link",
                alert_id=link.token.alert_id,
                contacts=True,
            )
        if wants_json:
            return JSONResponse(_view_json(link), status_code=status, headers=_HEADERS)
        decline_first = request.query_params.get("action", "").lower() == "decline"
        other = "zh" if lang == "en" else "en"
        query = f"?lang={other}" + ("&action=decline" if decline_first else "")
        page = view_html(link, lang, decline_first=decline_first, switch_to=query)
        return HTMLResponse(page, status_code=status, headers=_HEADERS)

    @router.post("/r/{token}", summary="Accept or decline, once")
    async def act(token: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body_is_json = _is_json(content_type)
        wants_json = _wants_json(request, body_is_json)
        if (blocked := limited(request, wants_json)) is not None:
            return blocked
        lang = _lang(request)
        body = await _read_body(request)
        if body is None:
            return _reply(
                wants_json, lang, 413, {"ok": False, "status": "too_large"}, "too_big", "warn"
            )
        action, problem = _parse_action(content_type, body)
        if action is None and problem is None:
            action = request.query_params.get("action")
        if action is None:
            message = problem or "missing action: send action=accept or action=decline"
            result = ActResult(ActStatus.BAD_ACTION, detail=message)
        else:
            result = await service.act(token, action)
            if result.token is not None and result.action in ("accept", "decline"):
                await _audit(
                    request,
                    result.token,
                    AuditAction.LINK_ACCEPT
                    if result.action == "accept"
                    else AuditAction.LINK_DECLINE,
                    "alert",
                    result.token.alert_id,
                    result=result.status.value,
                )
        status = ACT_HTTP_STATUS[result.status]
        payload: dict[str, object] = {
            "ok": result.ok,
            "status": result.status.value,
            "action": result.action,
            "alert_id": result.alert_id,
            "message": _t(_act_key(result), lang),
        }
        if result.status is ActStatus.BAD_ACTION:
            payload["detail"] = result.detail
        if result.status is ActStatus.USED and result.token is not None:
            payload["used_for"] = result.token.action
        css = "ok" if result.ok or _act_key(result).startswith("used_") else "warn"
        return _reply(wants_json, lang, status, payload, _act_key(result), css, result.detail)

    return router


def _reply(
    as_json: bool,
    lang: Lang,
    status: int,
    payload: dict[str, object],
    key: str,
    css: str,
    detail: str = "",
) -> Response:
    if as_json:
        payload.setdefault("message", _t(key, lang))
        return JSONResponse(payload, status_code=status, headers=_HEADERS)
    inner = _bi(key, lang)
    if status == 422 and detail:
        inner += f'<span class="en">{escape(detail)}</span>'
    return HTMLResponse(
        _page(lang, _message_card(inner, css)), status_code=status, headers=_HEADERS
    )


def _view_json(link: LinkView) -> dict[str, object]:
    data: dict[str, object] = {"status": link.status.value}
    if link.status is TokenStatus.USED and link.token is not None:
        data["used_for"] = link.token.action
    if link.view is not None:
        alert = link.view.alert
        data.update(
            {
                "alert_id": alert.id,
                "kind": alert.kind,
                "priority": alert.priority.value,
                "state": alert.state.value,
                "usable": link.usable,
                "taken_by_other": link.taken_by_other,
                "resident": link.view.resident.name if link.view.resident else None,
                "address": address_of(link.view.resident, link.view.device),
                "opened_at": format_time(alert.opened_at),
            }
        )
    return data
