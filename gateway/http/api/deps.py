"""Authentication and roles for ``/api/v1``, as FastAPI dependencies.

Two ways in, checked in this order:

* ``Authorization: Bearer <token>`` — scripts, apps, integrations (``scgw users add``).
* The dashboard's session cookie (``POST /login``). A cookie is sent by the browser on its
  own, so every state-changing call made with it must also carry the session's CSRF token in
  the ``X-CSRF-Token`` header (the page gets it from ``/api/v1/me``); the cookie is also
  ``SameSite=Strict``. A Bearer token is never sent automatically, so it needs no CSRF token.

No credential, or a wrong one: 401. A valid login whose role lacks the permission: 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.audit import AuditAction, Auditor
from gateway.http.api.actions import DeskActions
from gateway.http.api.console import Console
from gateway.http.api.stream import AlertFeed
from gateway.users import Perm, User, csrf_matches, hash_secret, looks_like_secret

SESSION_COOKIE: Final = "scgw_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

PERM_WORDS: Final[dict[Perm, str]] = {
    Perm.READ: "read the duty desk",
    Perm.CONTACTS: "see residents' contact details",
    Perm.ALERT_ACT: "act on alerts",
    Perm.ALERT_ASSIGN: "assign alerts",
    Perm.DEVICES: "manage devices",
    Perm.USERS: "manage users",
    Perm.AUDIT: "read the audit log",
}

_bearer = HTTPBearer(auto_error=False, description="an API token from `scgw users add`")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and how (``session_id`` is set for the dashboard's cookie)."""

    user: User
    session_id: str | None = None

    @property
    def name(self) -> str:
        return self.user.name

    def can(self, perm: Perm) -> bool:
        return self.user.can(perm)


def get_console(request: Request) -> Console:
    return cast(Console, request.app.state.console)


def get_feed(request: Request) -> AlertFeed:
    return cast(AlertFeed, request.app.state.feed)


def get_actions(request: Request) -> DeskActions:
    return cast(DeskActions, request.app.state.actions)


def get_auditor(request: Request) -> Auditor:
    return cast(Auditor, request.app.state.auditor)


def client_ip(request: Request) -> str | None:
    """The peer's address (behind a reverse proxy: run uvicorn with ``--proxy-headers``)."""
    return request.client.host if request.client else None


ConsoleDep = Annotated[Console, Depends(get_console)]
FeedDep = Annotated[AlertFeed, Depends(get_feed)]
ActionsDep = Annotated[DeskActions, Depends(get_actions)]


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=why, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(
    request: Request,
    console: ConsoleDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is not None:
        token = credentials.credentials
        user = None
        if looks_like_secret(token):
            user = await console.store.user_by_token(hash_secret(token))
        if user is None:
            raise _unauthorized("invalid API token")
        return Principal(user)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id and looks_like_secret(session_id):
        user = await console.store.session_user(hash_secret(session_id), console.now())
        if user is not None:
            if request.method not in SAFE_METHODS and not csrf_matches(
                session_id, request.headers.get(CSRF_HEADER)
            ):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    detail=f"missing or wrong {CSRF_HEADER} header (see /api/v1/me)",
                )
            return Principal(user, session_id)
    raise _unauthorized("log in: send Authorization: Bearer <token>")


def require(perm: Perm) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.can(perm):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.user.role.value} may not {PERM_WORDS[perm]}",
            )
        return principal

    check.__name__ = f"require_{perm.value}"
    return check


Authenticated = Annotated[Principal, Depends(authenticate)]


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit log bound to one request: who (the logged-in user) and from where."""

    auditor: Auditor
    principal: Principal
    client_ip: str | None

    async def __call__(
        self,
        action: AuditAction,
        target_kind: str,
        target_id: str | None = None,
        **detail: object,
    ) -> None:
        user = self.principal.user
        if self.principal.session_id is not None:
            detail.setdefault("via", "session")
        await self.auditor.record(
            actor=user.name,
            role=user.role.value,
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            client_ip=self.client_ip,
            detail=detail,
        )


async def audit_trail(request: Request, principal: Authenticated) -> AuditTrail:
    # FastAPI caches ``authenticate`` per request: this is the same principal the route's
    # role check saw, not a second lookup.
    return AuditTrail(get_auditor(request), principal, client_ip(request))


Audit = Annotated[AuditTrail, Depends(audit_trail)]
Reader = Annotated[Principal, Depends(require(Perm.READ))]
AlertActor = Annotated[Principal, Depends(require(Perm.ALERT_ACT))]
Assigner = Annotated[Principal, Depends(require(Perm.ALERT_ASSIGN))]
DeviceManager = Annotated[Principal, Depends(require(Perm.DEVICES))]
Admin = Annotated[Principal, Depends(require(Perm.USERS))]
AuditReader = Annotated[Principal, Depends(require(Perm.AUDIT))]

# Documented on every /api/v1 route (schemathesis checks that answers match the schema).
AUTH_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    401: {"description": "no or invalid credentials"},
    403: {"description": "the role may not do this (or the CSRF header is missing)"},
}
