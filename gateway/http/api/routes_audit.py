"""``/api/v1/audit``: the audit log, newest first, for admins only (see ``gateway/audit.py``)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from gateway.audit import AuditAction, AuditEntry, AuditQuery
from gateway.http.api.deps import AUTH_RESPONSES, AuditReader, ConsoleDep
from gateway.http.api.models import AuditOut, Instant, Page

Filter = Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]


def audit_out(entry: AuditEntry) -> AuditOut:
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = {"value": entry.detail}
    if not isinstance(detail, dict):
        detail = {"value": detail}
    return AuditOut(
        id=entry.id or 0,
        at=entry.at,
        actor=entry.actor,
        role=entry.role,
        action=entry.action,
        target_kind=entry.target_kind,
        target_id=entry.target_id,
        detail=detail,
        client_ip=entry.client_ip,
    )


def audit_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["audit"], responses=AUTH_RESPONSES)

    @router.get("/audit", summary="Who did what and who read which resident's card (admin)")
    async def audit_log(
        _: AuditReader,
        console: ConsoleDep,
        actor: Filter = None,
        action: Annotated[AuditAction | None, Query()] = None,
        target_kind: Filter = None,
        target_id: Filter = None,
        since: Annotated[Instant | None, Query(alias="from")] = None,
        until: Annotated[Instant | None, Query(alias="to")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Page[AuditOut]:
        """Filters combine; ``from`` inclusive, ``to`` exclusive. Reading the log is not
        itself logged (only admins can, and it holds no resident's details)."""
        if since is not None and until is not None and since >= until:
            problem = {"loc": ("query", "from"), "msg": "'from' must be before 'to'"}
            raise RequestValidationError([{**problem, "type": "value_error"}])
        entries = await console.store.audit_entries(
            AuditQuery(
                actor=actor,
                action=action.value if action else None,
                target_kind=target_kind,
                target_id=target_id,
                since=since,
                until=until,
                limit=limit + 1,
                offset=offset,
            )
        )
        more = len(entries) > limit
        return Page[AuditOut](
            items=[audit_out(e) for e in entries[:limit]],
            limit=limit,
            offset=offset,
            next_offset=offset + limit if more else None,
        )

    return router
