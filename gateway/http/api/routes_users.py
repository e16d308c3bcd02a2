"""``/api/v1/me``, ``/api/v1/meta`` (words for the dashboard) and ``/api/v1/users`` (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from gateway.audit import AuditAction
from gateway.http.api import labels
from gateway.http.api.console import LOW_BATTERY
from gateway.http.api.deps import AUTH_RESPONSES, Admin, Audit, Authenticated, ConsoleDep
from gateway.http.api.models import MeOut, MetaOut, NewUserOut, Problem, UserIn, UserOut
from gateway.storage.buckets import BUCKETS
from gateway.users import UserExistsError, csrf_token, hash_secret, new_token

UserName = Annotated[str, Path(pattern=r"^[\w.@-]{1,64}$")]


def users_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["users"], responses=AUTH_RESPONSES)

    @router.get("/me", summary="Who am I, what may I do")
    async def me(principal: Authenticated) -> MeOut:
        sid = principal.session_id
        return MeOut(
            name=principal.name,
            role=principal.user.role,
            perms=sorted(principal.user.perms),
            via="session" if sid else "token",
            csrf_token=csrf_token(sid) if sid else None,
        )

    @router.get("/meta", summary="Labels in Chinese and English for kinds, outcomes, types")
    async def meta(_: Authenticated) -> MetaOut:
        return MetaOut(
            kinds=labels.all_kinds(),
            priorities=labels.all_priorities(),
            outcomes=labels.all_outcomes(),
            device_types=labels.all_device_types(),
            buckets=list(BUCKETS),
            low_battery=LOW_BATTERY,
        )

    @router.get("/users")
    async def list_users(_: Admin, console: ConsoleDep) -> list[UserOut]:
        return [
            UserOut(name=u.name, role=u.role, created_at=u.created_at)
            for u in await console.store.list_users()
        ]

    @router.post(
        "/users",
        status_code=status.HTTP_201_CREATED,
        responses={409: {"model": Problem, "description": "the name is taken"}},
    )
    async def create_user(body: UserIn, _: Admin, console: ConsoleDep, audit: Audit) -> NewUserOut:
        """The answer carries the new API token; it is not stored and cannot be shown again."""
        token = new_token()
        now = console.now()
        try:
            await console.store.create_user(body.name, body.role, hash_secret(token), now)
        except UserExistsError:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"user {body.name!r} exists"
            ) from None
        # Never the token: the audit log is read by people who must not log in as others.
        await audit(AuditAction.USER_CREATE, "user", body.name, role=body.role.value)
        return NewUserOut(name=body.name, role=body.role, created_at=now, token=token)

    @router.delete(
        "/users/{name}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={
            404: {"model": Problem, "description": "no such user"},
            409: {"model": Problem, "description": "you cannot remove yourself"},
        },
    )
    async def delete_user(
        name: UserName, principal: Admin, console: ConsoleDep, audit: Audit
    ) -> Response:
        """The token and every browser session of the user stop working at once."""
        if name == principal.name:
            raise HTTPException(status.HTTP_409_CONFLICT, detail="you cannot remove yourself")
        if not await console.store.delete_user(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
        await audit(AuditAction.USER_DELETE, "user", name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
