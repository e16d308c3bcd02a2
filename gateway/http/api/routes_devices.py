"""``/api/v1/devices``: health, readings, registration; ``/api/v1/pending-devices``: unknown
devices seen on the wire, for a technician to adopt."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError

from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.audit import AuditAction
from gateway.http.api.console import Console
from gateway.http.api.deps import AUTH_RESPONSES, Audit, ConsoleDep, DeviceManager, Reader
from gateway.http.api.models import (
    ID_PATTERN,
    AlertOut,
    DeviceIn,
    DeviceOut,
    Instant,
    Page,
    PendingOut,
    Problem,
    ReadingPoint,
    ReadingSeries,
    ReadingsOut,
)
from gateway.storage.buckets import BUCKETS

DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="the device's id")]
Status = Literal["ok", "offline", "low_battery", "never_seen", "rate_limited"]

DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_BUCKETS: Final = 10_000  # points per series a chart can use; more means a wider bucket
RAW_LIMIT: Final = 5_000
PAYLOAD_SHOWN: Final = 500  # characters of an unknown device's last message
METRICS_LOOKBACK: Final = timedelta(days=30)
NOT_FOUND: Final[dict[int | str, dict[str, object]]] = {
    404: {"model": Problem, "description": "no such device"}
}


class DeviceDetail(DeviceOut):
    metrics: list[str]
    alerts: list[AlertOut]


def _matches(d: DeviceOut, want: Status | None, q: str | None) -> bool:
    if want == "offline" and not d.offline:
        return False
    if want == "low_battery" and not d.low_battery:
        return False
    if want == "never_seen" and not d.never_seen:
        return False
    if want == "rate_limited" and not d.rate_limited:
        return False
    if want == "ok" and (d.offline or d.low_battery or d.never_seen or d.rate_limited):
        return False
    if q:
        text = " ".join(
            x or "" for x in (d.device_id, d.name, d.resident_id, d.address.zh, d.address.en)
        )
        return q.lower() in text.lower()
    return True


def _invalid(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


async def _check_resident(console: Console, resident_id: str | None) -> None:
    if resident_id and not await console.store.existing_ids("residents", [resident_id]):
        raise _invalid(("body", "resident_id"), f"unknown resident {resident_id!r}")


def _record(device_id: str, body: DeviceIn) -> DeviceRecord:
    return DeviceRecord(
        device_id=device_id,
        type=body.type,
        name=body.name,
        resident_id=body.resident_id,
        building=body.building,
        unit=body.unit,
        room=body.room,
    )


def devices_router() -> APIRouter:
    router = APIRouter(tags=["devices"], responses=AUTH_RESPONSES)

    @router.get(
        "/api/v1/devices",
        summary="Registered devices and their health",
        description="``status=rate_limited``: devices flagged for flooding (sending telemetry"
        " over their rate limit), until they have been quiet for ``[ingest]"
        " device_flag_clear``.",
    )
    async def list_devices(
        _: Reader,
        console: ConsoleDep,
        status_: Annotated[Status | None, Query(alias="status")] = None,
        type_: Annotated[DeviceType | None, Query(alias="type")] = None,
        building: Annotated[str | None, Query(max_length=64)] = None,
        q: Annotated[str | None, Query(max_length=100, description="id, name, address")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> Page[DeviceOut]:
        # A community has thousands of devices, not millions: filter after one read, so the
        # offline rule (per type timeout) lives in one place.
        rows = [
            d
            for d in await console.device_rows()
            if (type_ is None or d.type == type_.value)
            and (building is None or d.building == building)
            and _matches(d, status_, q)
        ]
        page = rows[offset : offset + limit]
        more = len(rows) > offset + limit
        return Page[DeviceOut](
            items=page, limit=limit, offset=offset, next_offset=offset + limit if more else None
        )

    @router.get("/api/v1/devices/{device_id}", responses=NOT_FOUND)
    async def get_device(device_id: DeviceId, _: Reader, console: ConsoleDep) -> DeviceDetail:
        """Health, the metrics it reported in the last 30 days, its active alerts."""
        found = await console.device_rows(device_id)
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such device")
        metrics = await console.readings.metrics(device_id, console.now() - METRICS_LOOKBACK)
        active = await console.store.active_alerts(device_id=device_id)
        return DeviceDetail(
            **found[0].model_dump(),
            metrics=metrics,
            alerts=await console.alert_views(active),
        )

    @router.put("/api/v1/devices/{device_id}")
    async def put_device(
        device_id: DeviceId, body: DeviceIn, _: DeviceManager, console: ConsoleDep, audit: Audit
    ) -> DeviceOut:
        """Register a device or change its record (a technician at work)."""
        await _check_resident(console, body.resident_id)
        result = await console.store.upsert_devices([_record(device_id, body)])
        change = "created" if result.inserted else "updated" if result.updated else "unchanged"
        await audit(AuditAction.DEVICE_PUT, "device", device_id, change=change, **_audited(body))
        await console.store.delete_pending(device_id)
        await console.refresh_registry(device_id)
        # The alarms it raised while unregistered now name their resident.
        await console.engine.device_registered(device_id, f"user:{audit.principal.user.name}")
        return (await console.device_rows(device_id))[0]

    @router.get("/api/v1/devices/{device_id}/readings", responses=NOT_FOUND)
    async def readings(
        device_id: DeviceId,
        _: Reader,
        console: ConsoleDep,
        metric: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
        since: Annotated[Instant | None, Query(alias="from")] = None,
        until: Annotated[Instant | None, Query(alias="to")] = None,
        bucket: Annotated[
            Literal["1m", "5m", "1h", "1d"] | None,
            Query(description="avg/min/max per bucket, computed in the database"),
        ] = None,
    ) -> ReadingsOut:
        """Without ``bucket`` the stored readings (at most 5000), with it one point per
        bucket. Default range: the last 24 hours."""
        if not await console.store.device_exists(device_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such device")
        end = until or console.now()
        start = since or end - DEFAULT_SPAN
        if start >= end:
            raise _invalid(("query", "from"), "'from' must be before 'to'")
        truncated = False
        if bucket is not None:
            if (end - start).total_seconds() / BUCKETS[bucket] > MAX_BUCKETS:
                raise _invalid(
                    ("query", "bucket"),
                    f"more than {MAX_BUCKETS} buckets of {bucket}: choose a larger bucket",
                )
            series = await console.readings.bucketed(device_id, metric, start, end, bucket)
        else:
            series, truncated = await console.readings.raw(device_id, metric, start, end, RAW_LIMIT)
        return ReadingsOut(
            device_id=device_id,
            bucket=bucket,
            since=start,
            until=end,
            truncated=truncated,
            series=[
                ReadingSeries(
                    metric=name,
                    points=[
                        ReadingPoint(time=p.time, avg=p.avg, min=p.min, max=p.max, count=p.count)
                        for p in points
                    ],
                )
                for name, points in series.items()
            ],
        )

    @router.get("/api/v1/pending-devices", summary="Unregistered devices seen on the wire")
    async def pending(_: Reader, console: ConsoleDep) -> list[PendingOut]:
        return [
            PendingOut(
                device_id=p.device_id,
                first_seen=p.first_seen,
                last_seen=p.last_seen,
                messages=int(p.messages),
                sos_count=int(p.sos_count),
                last_kind=p.last_kind,
                last_payload=p.last_payload[:PAYLOAD_SHOWN],
            )
            for p in await console.store.pending_devices()
        ]

    @router.post(
        "/api/v1/pending-devices/{device_id}/adopt",
        status_code=status.HTTP_201_CREATED,
        responses={
            404: {"model": Problem, "description": "not in the pending list"},
            409: {"model": Problem, "description": "already registered"},
        },
    )
    async def adopt(
        device_id: DeviceId, body: DeviceIn, _: DeviceManager, console: ConsoleDep, audit: Audit
    ) -> DeviceOut:
        """Register a pending device: it joins the registry and leaves the pending list; its
        next message is ingested and can raise alerts."""
        pending_ids = {p.device_id for p in await console.store.pending_devices()}
        if device_id not in pending_ids:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not in the pending list")
        if await console.store.device_exists(device_id):
            await console.store.delete_pending(device_id)
            raise HTTPException(status.HTTP_409_CONFLICT, detail="already registered")
        await _check_resident(console, body.resident_id)
        await console.store.upsert_devices([_record(device_id, body)])
        await audit(AuditAction.DEVICE_ADOPT, "device", device_id, **_audited(body))
        await console.store.delete_pending(device_id)
        await console.refresh_registry(device_id)
        # The alarms it raised while unregistered now name their resident.
        await console.engine.device_registered(device_id, f"user:{audit.principal.user.name}")
        return (await console.device_rows(device_id))[0]

    return router


def _audited(body: DeviceIn) -> dict[str, object]:
    """The record as written (no personal data in a device record)."""
    return body.model_dump(mode="json", exclude_none=True)
