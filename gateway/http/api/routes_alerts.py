"""``/api/v1/alerts``: the queue, one alert with its timeline, the desk's actions, the stream."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Header, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from alerts.answers import step_answers
from alerts.engine import ActionOutcome, ActionStatus
from alerts.models import AlertState, Priority
from gateway.audit import AuditAction
from gateway.http.api.actions import AssignStatus
from gateway.http.api.console import Console, timeline_out
from gateway.http.api.deps import (
    AUTH_RESPONSES,
    ActionsDep,
    AlertActor,
    Assigner,
    Audit,
    AuditTrail,
    ConsoleDep,
    FeedDep,
    Principal,
    Reader,
)
from gateway.http.api.models import (
    ID_PATTERN,
    AlertDetail,
    AlertOut,
    AnswersOut,
    AssignIn,
    Instant,
    NoteIn,
    Page,
    Problem,
    ResolveIn,
    TimelineOut,
)
from gateway.users import Perm

AlertId = Annotated[str, Path(pattern=ID_PATTERN, description="the alert's id")]

ACTION_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    404: {"model": Problem, "description": "no such alert"},
    409: {"model": Problem, "description": "the alert is not in a state that allows this"},
}


def _conflict(outcome: ActionOutcome) -> HTTPException:
    alert = outcome.alert
    if outcome.status is ActionStatus.NOT_FOUND or alert is None:
        return HTTPException(status.HTTP_404_NOT_FOUND, detail="no such alert")
    if outcome.status is ActionStatus.TAKEN:
        return HTTPException(
            status.HTTP_409_CONFLICT, detail=f"already acknowledged by {alert.acked_by}"
        )
    return HTTPException(status.HTTP_409_CONFLICT, detail=f"the alert is {alert.state.value}")


async def _one(console: Console, outcome: ActionOutcome) -> AlertOut:
    if not outcome.ok or outcome.alert is None:
        raise _conflict(outcome)
    return (await console.alert_views([outcome.alert]))[0]


def _last_event_id(header: str | None, query: int | None) -> int | None:
    if query is not None:
        return query
    if header is not None and header.strip().isdigit():
        return int(header.strip())
    return None  # absent or not ours: start from a snapshot


def alerts_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=AUTH_RESPONSES)

    @router.get("", summary="Alerts, P1 first then oldest first")
    async def list_alerts(
        _: Reader,
        console: ConsoleDep,
        state: Annotated[list[AlertState] | None, Query(description="repeatable")] = None,
        priority: Annotated[list[Priority] | None, Query(description="repeatable")] = None,
        since: Annotated[Instant | None, Query(description="opened at or after")] = None,
        until: Annotated[Instant | None, Query(description="opened before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Page[AlertOut]:
        alerts = await console.store.list_alerts(
            states=state or (),
            priorities=priority or (),
            since=since,
            until=until,
            limit=limit + 1,
            offset=offset,
        )
        items = await console.alert_views(alerts[:limit])
        more = len(alerts) > limit
        return Page[AlertOut](
            items=items, limit=limit, offset=offset, next_offset=offset + limit if more else None
        )

    @router.get(
        "/stream",
        summary="Alert changes as server-sent events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}},
    )
    async def stream(
        _: Reader,
        feed: FeedDep,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        last_event_id: Annotated[
            int | None, Query(ge=0, description="as the Last-Event-ID header")
        ] = None,
    ) -> StreamingResponse:
        """``event: snapshot`` (the active queue) first, or with ``Last-Event-ID`` what
        changed since; then ``event: alert`` per change (``{"alert": …, "actions": […]}``)
        and a comment line every 15 s."""
        start = _last_event_id(last_event_id_header, last_event_id)
        return StreamingResponse(
            feed.stream(start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @router.get("/{alert_id}", responses={404: ACTION_RESPONSES[404]})
    async def get_alert(
        alert_id: AlertId, principal: Reader, console: ConsoleDep, audit: Audit
    ) -> AlertDetail:
        """The alert, its timeline, the resident card and the device."""
        alert = await console.store.get_alert(alert_id)
        if alert is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such alert")
        view = (await console.alert_views([alert]))[0]
        entries = await console.store.timeline(alert_id)
        timeline = [timeline_out(e) for e in entries]
        answers = step_answers(entries)
        resident = console.registry.resident(view.resident_id)
        devices = await console.device_rows(alert.device_id) if alert.device_id else []
        contacts = _contacts(principal)
        if resident is not None:
            # The card is part of the answer: its read is on record before it is sent.
            await audit(
                AuditAction.RESIDENT_READ,
                "resident",
                resident.resident_id,
                via="alert",
                alert_id=alert_id,
                contacts=contacts,
            )
        return AlertDetail(
            **view.model_dump(),
            timeline=timeline,
            answers=AnswersOut(
                step=answers.step,
                asked=list(answers.asked),
                declined=list(answers.declined),
                unreached=list(answers.unreached),
                pending=list(answers.pending),
            ),
            resident=console.resident_out(resident, contacts=contacts) if resident else None,
            device=devices[0] if devices else None,
        )

    @router.post("/{alert_id}/ack", responses=ACTION_RESPONSES, summary="The desk takes it")
    async def ack(
        alert_id: AlertId, principal: AlertActor, console: ConsoleDep, audit: Audit
    ) -> AlertOut:
        outcome = await console.engine.acknowledge(alert_id, principal.name)
        await _audit_outcome(audit, AuditAction.ALERT_ACK, alert_id, outcome)
        return await _one(console, outcome)

    @router.post("/{alert_id}/resolve", responses=ACTION_RESPONSES)
    async def resolve(
        alert_id: AlertId,
        body: ResolveIn,
        principal: AlertActor,
        console: ConsoleDep,
        audit: Audit,
    ) -> AlertOut:
        """Close it with an outcome (and a note); the device hears "resolved"."""
        outcome = await console.engine.resolve(
            alert_id, f"user:{principal.name}", body.outcome, body.note
        )
        await _audit_outcome(
            audit, AuditAction.ALERT_RESOLVE, alert_id, outcome, closed_as=body.outcome.value
        )
        return await _one(console, outcome)

    @router.post("/{alert_id}/assign", responses=ACTION_RESPONSES)
    async def assign(
        alert_id: AlertId,
        body: AssignIn,
        principal: Assigner,
        console: ConsoleDep,
        actions: ActionsDep,
        audit: Audit,
    ) -> AlertOut:
        """Hand it to a responder: acknowledged by them, device told, responder notified."""
        result = await actions.assign(alert_id, body.responder_id, principal.name)
        await audit(
            AuditAction.ALERT_ASSIGN,
            "alert",
            alert_id,
            responder_id=body.responder_id,
            result=result.status.value,
        )
        if result.status is AssignStatus.UNKNOWN_RESPONDER:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "responder_id"),
                        "msg": f"unknown responder {body.responder_id!r}",
                        "type": "value_error",
                    }
                ]
            )
        if result.status is AssignStatus.NOT_FOUND or result.alert is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such alert")
        if result.status is AssignStatus.CLOSED:
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail=f"the alert is {result.alert.state.value}"
            )
        return (await console.alert_views([result.alert]))[0]

    @router.post(
        "/{alert_id}/notes",
        status_code=status.HTTP_201_CREATED,
        responses={404: ACTION_RESPONSES[404]},
    )
    async def add_note(
        alert_id: AlertId, body: NoteIn, principal: AlertActor, actions: ActionsDep, audit: Audit
    ) -> TimelineOut:
        """A note on the timeline (closed alerts too: reports are written afterwards)."""
        entry = await actions.note(alert_id, principal.name, body.text)
        # The text is on the timeline; the audit keeps its length, not a second copy.
        await audit(
            AuditAction.ALERT_NOTE,
            "alert",
            alert_id,
            result="done" if entry else "not_found",
            chars=len(body.text),
        )
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such alert")
        return timeline_out(entry)

    return router


async def _audit_outcome(
    audit: AuditTrail,
    action: AuditAction,
    alert_id: str,
    outcome: ActionOutcome,
    **detail: object,
) -> None:
    """Refused attempts (taken, closed, unknown) are on record too."""
    await audit(action, "alert", alert_id, result=outcome.status.value, **detail)


def _contacts(principal: Principal) -> bool:
    return principal.can(Perm.CONTACTS)
