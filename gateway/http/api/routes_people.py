"""``/api/v1/residents`` and ``/api/v1/responders``. Phones, medical notes and family contacts
only for roles with the contacts permission (admin, duty, responder)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from alerts.duty import on_duty
from alerts.messages import local_time
from devices.records import ResidentRecord
from gateway.audit import AuditAction
from gateway.http.api.console import Console
from gateway.http.api.deps import AUTH_RESPONSES, Audit, ConsoleDep, Reader
from gateway.http.api.labels import address_labels
from gateway.http.api.models import Page, Problem, ResidentOut, ResponderOut
from gateway.users import Perm

ResidentId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f/]+$")]


def _resident_text(r: ResidentRecord) -> str:
    address = address_labels(r.building, r.unit, r.room)
    return " ".join(x or "" for x in (r.resident_id, r.name, address.zh, address.en, r.grid))


def _page(items: list[ResidentOut], limit: int, offset: int) -> Page[ResidentOut]:
    page = items[offset : offset + limit]
    more = len(items) > offset + limit
    return Page[ResidentOut](
        items=page, limit=limit, offset=offset, next_offset=offset + limit if more else None
    )


async def _responders(console: Console, contacts: bool) -> list[ResponderOut]:
    records = await console.store.responders()
    load = await console.store.responder_load([r.responder_id for r in records])
    now = local_time(console.now())
    return [
        ResponderOut(
            responder_id=r.responder_id,
            name=r.name,
            role=r.role,
            phone=r.phone if contacts else None,
            building=r.building,
            grid=r.grid,
            skills=list(r.skills),
            on_duty=r.on_duty,
            on_duty_now=on_duty(r.on_duty, now),
            active_alerts=load.get(r.responder_id, 0),
        )
        for r in records
    ]


def people_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["people"], responses=AUTH_RESPONSES)

    @router.get("/residents")
    async def list_residents(
        principal: Reader,
        console: ConsoleDep,
        audit: Audit,
        q: Annotated[str | None, Query(max_length=100, description="name, id, address")] = None,
        building: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Page[ResidentOut]:
        contacts = principal.can(Perm.CONTACTS)
        wanted = [
            console.resident_out(r, contacts=contacts)
            for r in await console.store.residents()
            if (building is None or r.building == building)
            and (not q or q.lower() in _resident_text(r).lower())
        ]
        page = _page(wanted, limit, offset)
        if contacts and page.items:
            # A page of cards with phones and medical notes: whose were shown, and why.
            await audit(
                AuditAction.RESIDENTS_LIST,
                "resident",
                None,
                ids=[r.resident_id for r in page.items],
                q=q,
                building=building,
                offset=offset,
            )
        return page

    @router.get(
        "/residents/{resident_id}",
        responses={404: {"model": Problem, "description": "no such resident"}},
    )
    async def get_resident(
        resident_id: ResidentId, principal: Reader, console: ConsoleDep, audit: Audit
    ) -> ResidentOut:
        contacts = principal.can(Perm.CONTACTS)
        for r in await console.store.residents():
            if r.resident_id == resident_id:
                await audit(AuditAction.RESIDENT_READ, "resident", resident_id, contacts=contacts)
                return console.resident_out(r, contacts=contacts)
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such resident")

    @router.get("/responders", summary="Volunteers, social workers, grid workers, the desk")
    async def list_responders(
        principal: Reader,
        console: ConsoleDep,
        role: Annotated[str | None, Query(max_length=64)] = None,
        on_duty_now: Annotated[bool | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Page[ResponderOut]:
        rows = [
            r
            for r in await _responders(console, principal.can(Perm.CONTACTS))
            if (role is None or r.role == role)
            and (on_duty_now is None or r.on_duty_now == on_duty_now)
        ]
        page = rows[offset : offset + limit]
        more = len(rows) > offset + limit
        return Page[ResponderOut](
            items=page, limit=limit, offset=offset, next_offset=offset + limit if more else None
        )

    return router
